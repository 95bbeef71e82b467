"""What the lab benchmarks (datapath.py, services.py) share: progress lines, commands in a pod,
per-name samples, the allowing policy proved in force, and running a maps benchmark."""

from __future__ import annotations

import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from integration.lab.lab import Lab, _bin
from integration.lab.manifests import Applier, parse_manifest
from integration.lab.state import PodState

ROOT = Path(__file__).resolve().parents[1]


def say(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def run_in(pod: PodState, *argv: str, timeout: float = 60) -> str:
    """A command in the pod's namespace; its stdout, or RuntimeError naming it."""
    out = subprocess.run(["ip", "netns", "exec", pod.netns, *argv], capture_output=True,
                         text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} in {pod.name}: exit {out.returncode}: "
                           f"{out.stderr.strip()[-500:]}")
    return out.stdout


@dataclass
class Samples:
    """Measured values by name, in the order they were taken."""

    results: dict[str, list[float]] = field(default_factory=dict, kw_only=True)

    def record(self, name: str, value: float) -> None:
        self.results.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        return statistics.median(self.results[name])


def apply_allow_policy(lab: Lab, policy: str, client: PodState, server_ip: str,
                       denied_port: int) -> str:
    """`bulkhead policy apply --wait` of `policy`, then proof that enforcement is on: the
    client's connection to `denied_port` times out. Returns apply's last line."""
    path = lab.state().directory / "bench-allow.yaml"
    path.write_text(policy)
    out = subprocess.run([_bin("bulkhead"), "policy", "apply", "-f", str(path), "--wait"],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"bulkhead policy apply failed: {out.stdout}{out.stderr}")
    denied = subprocess.run(
        ["ip", "netns", "exec", client.netns, "curl", "-s", "-o", "/dev/null",
         "--connect-timeout", "1", f"http://{server_ip}:{denied_port}/"],
        capture_output=True, timeout=10).returncode
    if denied != 28:
        raise RuntimeError(f"port {denied_port} should time out under the policy; curl exit "
                           f"{denied}")
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "policy applied"


def service_yaml(name: str, port: int, target_port: int) -> str:
    """A ClusterIP Service selecting the benchmarks' server pod (app=bench-server)."""
    return f"""\
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: default
spec:
  selector:
    app: bench-server
  ports:
  - port: {port}
    targetPort: {target_port}
    protocol: TCP
"""


def apply_service(lab: Lab, name: str, port: int, target_port: int) -> str:
    """The Service through `bulkhead-lab apply -f`'s code, which returns once every node's
    load-balancer map holds its backend; its ClusterIP. The server must be its one backend."""
    result = Applier(lab, lambda line: None).apply(
        parse_manifest(service_yaml(name, port, target_port)))
    service = result["services"][0]
    if len(service["backends"]) != 1:
        raise RuntimeError(f"{name} should have the server as its one backend: {service}")
    return str(service["cluster_ip"])


def run_script(name: str, timeout: float) -> list[str]:
    """Runs bench/NAME as its own process (a maps benchmark); its output lines."""
    out = subprocess.run([sys.executable, str(ROOT / "bench" / name)], capture_output=True,
                         text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"bench/{name} failed: {out.stderr[-1000:]}")
    return out.stdout.strip().splitlines()
