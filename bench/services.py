"""Benchmark: services in a Bulkhead lab, against the same connections without the service.

One lab (bpf, 2 nodes): a server pod on n1 (bench/rr.py's server), client pods on n2 and on
n1, a CiliumNetworkPolicy allowing the clients to the server's port (applied with
`bulkhead policy apply --wait`, a third port checked to be dropped, so policy is enforced
after the translation), and a Service selecting the server (`bulkhead-lab apply -f`, which
waits until every node load-balances it).
(a) From n2, alternating ClusterIP / backend pod IP for ROUNDS rounds, medians: `crr` (a new
    connection per 64-byte request/reply) and `rr` (round trips over one connection),
    bench/rr.py; target ClusterIP/direct >= 0.95 for crr.  The ClusterIP and the direct runs
    come from two client pods on n2 (same node, same path), and the probers of (b) from two
    more: the datapath keeps a closed connection's conntrack entry (keyed by the translated
    tuple) for 10 s, and a new connection that reuses its 4-tuple the other way (direct after
    translated or the reverse) is taken for the old one, so its replies are translated as the
    old one's were and the handshake fails.
(b) `service apply` -> reachable from every node: APPLIES times a new Service (selecting the
    server) goes in through ServiceService.Apply (what `bulkhead service apply` calls); from
    just before the call, a client on each node opens a new connection through the new
    ClusterIP every 5 ms (bench/svcprobe.py) until one completes a request/reply; the time
    until both nodes got one, p50/p99 (and per node).
(c) 10,000 services x 10 backends written into the BPF service maps (bench/services_maps.py,
    run as is); target <= 1 s.
Needs root, bcc and curl.  The lab gets a unique name and a temporary BULKHEAD_STATE_DIR and
is taken down even on failure.
Last line: ``service connection rate ratio: <vip/direct>`` (crr medians).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labbench import (  # noqa: E402
    Samples,
    apply_allow_policy,
    apply_service,
    run_in,
    run_script,
    say,
    service_yaml,
)
from stats import pct  # noqa: E402  (bench/ is sys.path[0] when run as a script)

from bulkhead.v1 import service_pb2, service_pb2_grpc  # noqa: E402
from integration.lab import credentials as lab_credentials  # noqa: E402
from integration.lab import processes  # noqa: E402
from integration.lab.lab import Lab  # noqa: E402
from integration.lab.state import PodState  # noqa: E402

ROUNDS = 5
RR_SECONDS = 2.0
RR_PORT, DENIED_PORT, SVC_PORT = 5202, 5203, 80
APPLIES = 20
CRR_TARGET = 0.95
POLICY = f"""\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: bench-allow
  namespace: default
spec:
  description: the benchmark clients may reach the server's request/response port
  endpointSelector:
    matchLabels:
      app: bench-server
  ingress:
  - fromEndpoints:
    - matchLabels:
        app: bench-client
    toPorts:
    - ports:
      - port: "{RR_PORT}"
        protocol: TCP
"""


@dataclass
class Bench(Samples):
    """The lab under test, its pods and processes, and what was measured."""

    lab: Lab
    pods: dict[str, PodState] = field(default_factory=dict)
    pids: list[int] = field(default_factory=list)
    probers: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    cluster_ip: str = ""


def start(b: Bench) -> None:
    say(f"lab {b.lab.name}: --datapath=bpf, 2 nodes")
    b.lab.up(2, datapath="bpf")
    b.pods["server"] = b.lab.pod_create("server", "n1", "default", ["app=bench-server"])
    for key, name, node in (("vip", "client-vip", "n2"), ("direct", "client", "n2"),
                            ("n1", "probe-n1", "n1"), ("n2", "probe-n2", "n2")):
        b.pods[key] = b.lab.pod_create(name, node, "default", ["app=bench-client"])
    directory = b.lab.state().directory
    b.pids.append(processes.start_ready(
        ["ip", "netns", "exec", b.pods["server"].netns, sys.executable,
         str(ROOT / "bench/rr.py"), "server", str(RR_PORT)], directory / "rr.log"))


def apply_policy(b: Bench) -> None:
    """The allowing policy, waited for on every node; then prove enforcement is on."""
    apply_allow_policy(b.lab, POLICY, b.pods["direct"], b.pods["server"].ip, DENIED_PORT)


def start_service(b: Bench) -> None:
    """The measured service; every node load-balances it when this returns."""
    b.cluster_ip = apply_service(b.lab, "bench-svc", SVC_PORT, RR_PORT)
    say(f"service default/bench-svc: {b.cluster_ip}:{SVC_PORT} -> "
        f"{b.pods['server'].ip}:{RR_PORT}")


def measure(b: Bench, target: str) -> None:
    """One rr and one crr run from n2 (client-vip or client), to the ClusterIP or the pod IP."""
    ip, port = ((b.cluster_ip, SVC_PORT) if target == "vip"
                else (b.pods["server"].ip, RR_PORT))
    for mode in ("rr", "crr"):
        got = json.loads(run_in(b.pods[target], sys.executable, str(ROOT / "bench/rr.py"),
                                "client", ip, str(port), str(RR_SECONDS), mode))
        b.record(f"{target} {mode}", got["rate"])
    say(f"({target}) rr {b.results[f'{target} rr'][-1]:.0f}/s, "
        f"crr {b.results[f'{target} crr'][-1]:.0f}/s")


def start_probers(b: Bench) -> None:
    for node in ("n1", "n2"):
        prober = subprocess.Popen(
            ["ip", "netns", "exec", b.pods[node].netns, sys.executable,
             str(ROOT / "bench/svcprobe.py")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        b.probers[node] = prober
        assert prober.stdout is not None
        if prober.stdout.readline().strip() != "ready":
            raise RuntimeError(f"bench/svcprobe.py did not start on {node}")


def apply_to_reachable(b: Bench, stub: service_pb2_grpc.ServiceServiceStub, i: int) -> None:
    """One new service: Apply, then both nodes' probers connect through its ClusterIP."""
    name = f"bench-new-{i}"
    t0 = time.monotonic()
    reply = stub.Apply(service_pb2.ApplyServicesRequest(yaml=service_yaml(name, SVC_PORT, RR_PORT)),
                       timeout=30)
    applied = time.monotonic()
    svc = reply.services[0].service
    if reply.services[0].action != "created" or len(svc.backends) != 1:
        raise RuntimeError(f"service {name}: {reply.services[0].action}, "
                           f"{len(svc.backends)} backends (want created, 1)")
    for prober in b.probers.values():
        assert prober.stdin is not None
        prober.stdin.write(f"{svc.cluster_ip} {SVC_PORT}\n")
        prober.stdin.flush()
    ats: dict[str, float] = {}
    for node, prober in b.probers.items():
        assert prober.stdout is not None
        line = prober.stdout.readline()  # bounded: the prober answers within its DEADLINE
        got: dict[str, Any] = json.loads(line) if line else {"error": "the prober exited"}
        if "error" in got:
            raise RuntimeError(f"{name} ({svc.cluster_ip}) from {node}: {got['error']}")
        ats[node] = got["at"]
        b.record(f"reach {node}", got["at"] - t0)
    b.record("apply rpc", applied - t0)
    b.record("reach all", max(ats.values()) - t0)


def stop(b: Bench) -> None:
    for prober in b.probers.values():
        if prober.stdin is not None:
            prober.stdin.close()
        try:
            prober.wait(timeout=20)
        except subprocess.TimeoutExpired:
            prober.kill()
            prober.wait(timeout=10)
    for pid in b.pids:
        processes.stop(pid)
    b.lab.down()


def main() -> None:
    tag = secrets.token_hex(2)
    state_dir = tempfile.mkdtemp(prefix="bulkhead-bench-")
    os.environ["BULKHEAD_STATE_DIR"] = state_dir
    b = Bench(Lab(f"bs{tag}", say=lambda m: None))
    try:
        start(b)
        apply_policy(b)
        start_service(b)
        for i in range(ROUNDS):
            for target in ("vip", "direct") if i % 2 == 0 else ("direct", "vip"):
                measure(b, target)
        say(f"service apply -> reachable from every node, {APPLIES} new services")
        start_probers(b)
        stub = service_pb2_grpc.ServiceServiceStub(lab_credentials.channel(b.lab.state()))
        for i in range(APPLIES):
            apply_to_reachable(b, stub, i)
    finally:
        try:
            stop(b)
        except Exception as exc:
            print(f"bench: taking down {b.lab.name} failed: {exc}", file=sys.stderr)
        shutil.rmtree(state_dir, ignore_errors=True)
    say("10,000 services x 10 backends (bench/services_maps.py)")
    lines = run_script("services_maps.py", timeout=180)

    def each(name: str) -> str:
        return ", ".join(f"{v:.0f}" for v in b.results[name]) + " /s"

    def ms(name: str, q: float) -> str:
        return f"{pct(b.results[name], q) * 1000:.0f} ms"

    print(f"(a) rounds: {ROUNDS}, alternating ClusterIP/direct; client on n2, server on n1, "
          "allowing policy; medians below")
    for target, what in (("vip", f"through the ClusterIP {b.cluster_ip}:{SVC_PORT}"),
                         ("direct", f"to the backend's pod IP {b.pods['server'].ip}:{RR_PORT}")):
        print(f"  {what}:")
        print(f"    rr  (64 B round trips, one connection) {b.median(f'{target} rr'):.0f}/s "
              f"[{each(f'{target} rr')}]")
        print(f"    crr (new connection per request)        {b.median(f'{target} crr'):.0f}/s "
              f"[{each(f'{target} crr')}]")
    # Contention on the shared machine only slows a sample down: the per-round pairs, measured
    # back to back, are printed as well.
    for mode in ("rr", "crr"):
        pairs = [v / d for v, d in zip(b.results[f"vip {mode}"], b.results[f"direct {mode}"],
                                       strict=True)]
        print(f"  {mode}: per-round vip/direct [{', '.join(f'{r:.2f}' for r in pairs)}], "
              f"median {statistics.median(pairs):.2f}")
    rr_ratio = b.median("vip rr") / b.median("direct rr")
    crr_ratio = b.median("vip crr") / b.median("direct crr")
    print(f"  request/response rate ratio vip/direct (rr, one connection): {rr_ratio:.2f}")
    print(f"  connection rate ratio vip/direct (crr): {crr_ratio:.2f} "
          f"(target >= {CRR_TARGET}: {'MET' if crr_ratio >= CRR_TARGET else 'MISSED'})")
    print(f"(b) service apply -> a new connection through the ClusterIP from every node "
          f"({APPLIES} services; p99 of {APPLIES} samples is their maximum):")
    print(f"    every node: p50 {ms('reach all', 0.5)}, p99 {ms('reach all', 0.99)}")
    for node in ("n1", "n2"):
        print(f"    {node}: p50 {ms(f'reach {node}', 0.5)}, p99 {ms(f'reach {node}', 0.99)}")
    print(f"    of which the Apply call: p50 {ms('apply rpc', 0.5)}, "
          f"p99 {ms('apply rpc', 0.99)}")
    print("(c) BPF service maps (bench/services_maps.py):")
    for line in lines:
        print(f"    {line}")
    print(f"service connection rate ratio: {crr_ratio:.2f}")


if __name__ == "__main__":
    main()
