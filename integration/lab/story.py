"""`make run`: the Star Wars scenario on a two-node lab, each step printed with its command.

The same steps, without the printing, are what integration/test_story.py asserts.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
POLICY = HERE / "sw_l3_l4_policy.yaml"
L7_POLICY = HERE / "sw_l3_l4_l7_policy.yaml"
"""The demo's own L7 step, unchanged: rule1 again, its port 80 limited to POST
/v1/request-landing."""
MANIFEST = HERE / "http-sw-app.yaml"
"""The demo's http-sw-app.yaml, unchanged (integration/test_lab_manifests.py checks it against
../shared/starwars/ when that is there): the deathstar Service and Deployment, two ships."""
DEATHSTAR = "default/deathstar"


def shown_path(path: Path) -> str:
    """`path` as a user at the repository's root types it."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def shown(self) -> str:
        return " ".join(shlex.quote(a) for a in self.argv)


class Scenario:
    def __init__(self, lab: str = "default", env: dict[str, str] | None = None,
                 echo: bool = False) -> None:
        self.lab = lab
        self.env = {**os.environ, **(env or {}), "BULKHEAD_LAB": lab}
        self.echo = echo
        bin_dir = Path(sys.executable).parent
        self.lab_cmd = str(bin_dir / "bulkhead-lab")
        self.cli = str(bin_dir / "bulkhead")
        self.target = ""      # the deathstar's address: see deathstar_address()

    def run(self, *argv: str, timeout: float = 120, check: bool = False,
            quiet: bool = False) -> Result:
        """Runs a command; with `echo`, prints it and its output (unless `quiet`: the JSON
        look-ups the story makes for its own checks)."""
        shown = [Path(argv[0]).name, *argv[1:]]
        echo = self.echo and not quiet
        if echo:
            print(f"\n  $ {' '.join(shlex.quote(a) for a in shown)}", flush=True)
        done = subprocess.run(list(argv), env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        result = Result(shown, done.returncode, done.stdout, done.stderr)
        if echo:
            for line in (done.stdout.rstrip() or "").splitlines():
                print(f"    {line}")
        if check and done.returncode != 0:
            raise RuntimeError(f"{result.shown} failed ({done.returncode}): "
                               f"{done.stderr.strip()}")
        return result

    # -- the steps ---------------------------------------------------------------------------

    def setup(self) -> None:
        """The lab, then the demo's manifest as `kubectl create -f` would take it (what is
        already there is kept), from the unprotected deathstar."""
        self.run(self.lab_cmd, "up", "--nodes", "2", check=True, timeout=300)
        self.run(self.lab_cmd, "apply", "-f", shown_path(MANIFEST), check=True, timeout=300)
        self.run(self.cli, "service", "list", check=True)
        # A rerun starts from the unprotected deathstar.
        self.run(self.cli, "policy", "delete", "default/rule1", quiet=True)
        self.target = self.deathstar_address()

    def deathstar_address(self) -> str:
        """Where the ships send their requests: the deathstar SERVICE by its cluster DNS name,
        as in the demo (the agent of the ship's node answers it with the ClusterIP); whichever
        deathstar pod gets a connection, policy applies to that pod."""
        return f"{DEATHSTAR.split('/')[1]}.{DEATHSTAR.split('/')[0]}.svc.cluster.local"

    def pods(self) -> list[dict[str, Any]]:
        out = self.run(self.lab_cmd, "pod", "list", "-o", "json", check=True, quiet=True).stdout
        return list(json.loads(out))

    def deathstars(self) -> list[str]:
        """The deathstar Deployment's pods (`deathstar-<hash>-<suffix>`), by node."""
        return [p["name"] for p in sorted(self.pods(), key=lambda p: (p["node"], p["name"]))
                if "k8s:class=deathstar" in p["labels"]]

    def ip(self, pod: str) -> str:
        return next(p["ip"] for p in self.pods() if p["name"] == pod)

    def land(self, ship: str, pod: str = "", timeout: int = 3) -> Result:
        """`ship` asks for landing at the deathstar service, or at one deathstar `pod`."""
        url = f"http://{self.ip(pod) if pod else self.target}/v1/request-landing"
        return self.run(self.lab_cmd, "exec", ship, "--", "curl", "-s", "-m", str(timeout),
                        "-XPOST", url)

    def exhaust(self, ship: str, timeout: int = 3) -> Result:
        """The demo's attack: `ship` PUTs to the deathstar service's exhaust port."""
        return self.run(self.lab_cmd, "exec", ship, "--", "curl", "-s", "-m", str(timeout),
                        "-XPUT", f"http://{self.target}/v1/exhaust-port")

    def apply_policy(self, policy: Path = POLICY) -> Result:
        return self.run(self.cli, "policy", "apply", "-f", shown_path(policy), "--wait",
                        "--timeout", "30", check=True)

    def observe(self, *filters: str) -> list[dict[str, Any]]:
        out = self.run(self.cli, "observe", "--last", "50", *filters, "-o", "json",
                       check=True, quiet=True).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def endpoints(self) -> list[dict[str, Any]]:
        return list(json.loads(self.run(self.cli, "endpoint", "list", "-o", "json",
                                        check=True, quiet=True).stdout))


def step(title: str) -> None:
    print(f"\n\033[1m{title}\033[0m" if sys.stdout.isatty() else f"\n{title}", flush=True)


def verdict(ok: bool, text: str) -> bool:
    print(f"  {'✔' if ok else '✘'} {text}", flush=True)
    return ok


def main() -> None:
    started = time.monotonic()
    story = Scenario(os.environ.get("BULKHEAD_LAB", "default"))
    step("Setting up a two-node lab, then the demo's app: the deathstar service with two "
         "replicas, a tiefighter and an xwing")
    story.echo = True
    story.setup()
    print("  " + ", ".join(f"{p['name']} on {p['node']} ({p['ip']})" for p in story.pods()))
    print(f"  The ships call the deathstar service by name: {story.target}")
    good = True

    step("1. Without a policy, both ships land")
    good &= verdict(story.land("tiefighter").stdout.strip() == "Ship landed",
                    "tiefighter landed")
    good &= verdict(story.land("xwing").stdout.strip() == "Ship landed", "xwing landed")

    step("2. rule1: only the empire may reach the deathstars, on 80/TCP")
    print(f"  ({POLICY.name}: endpointSelector org=empire,class=deathstar; "
          f"ingress fromEndpoints org=empire, toPorts 80/TCP)")
    story.apply_policy()

    step("3. The tiefighter lands; the xwing's request times out (through the service: "
         "policy applies to the deathstar pod behind it)")
    tie = story.land("tiefighter")
    good &= verdict(tie.stdout.strip() == "Ship landed", "tiefighter landed")
    xw = story.land("xwing")
    good &= verdict(xw.returncode == 28, f"xwing timed out (curl exit {xw.returncode})")

    step("4. What the datapath saw")
    story.run(story.cli, "observe", "--last", "6", "--to-label", "class=deathstar")
    flows = story.observe("--to-label", "class=deathstar")
    good &= verdict(any(f["verdict"] == "FORWARDED" and f["source"]["pod"] == "tiefighter"
                        for f in flows), "FORWARDED for the tiefighter")
    good &= verdict(any(f["verdict"] == "DROPPED" and f["source"]["pod"] == "xwing"
                        and f["drop_reason"].startswith("Policy denied") for f in flows),
                    "DROPPED (Policy denied) for the xwing")

    step("5. Ingress enforcement is on for the deathstars only")
    story.run(story.cli, "endpoint", "list")
    enforced = {e["name"] for e in story.endpoints() if e["ingress_enforced"]}
    by_node = story.deathstars()
    deathstars = set(by_node)
    good &= verdict(enforced == deathstars and len(deathstars) == 2,
                    f"ingress enforced on: {', '.join(sorted(enforced)) or 'nothing'}")

    step("6. The L7 step: rule1 again, its port 80 now limited to POST /v1/request-landing")
    print(f"  ({L7_POLICY.name}, the demo's own: toPorts 80/TCP, rules.http method POST, "
          f"path /v1/request-landing; each node's proxy checks every request)")
    story.apply_policy(L7_POLICY)

    step("7. The tiefighter still lands; its attack on the exhaust port is denied; the xwing "
         "still times out")
    tie = story.land("tiefighter")
    good &= verdict(tie.stdout.strip() == "Ship landed", "tiefighter landed")
    attack = story.exhaust("tiefighter")
    good &= verdict(attack.stdout.strip() == "Access denied",
                    "tiefighter's PUT /v1/exhaust-port: Access denied")
    xw = story.land("xwing")
    good &= verdict(xw.returncode == 28, f"xwing timed out (curl exit {xw.returncode})")

    step("8. What the proxies saw: every request, with its verdict")
    story.run(story.cli, "observe", "--type", "http", "--last", "4")
    l7 = story.observe("--type", "http")
    good &= verdict(any(f.get("l7", {}).get("type") == "request" and f["verdict"] == "DROPPED"
                        and f["l7"]["http"]["method"] == "PUT" for f in l7),
                    "http-request DROPPED for the PUT")
    good &= verdict(any(f.get("l7", {}).get("type") == "request"
                        and f["verdict"] == "FORWARDED" and f["l7"]["http"]["method"] == "POST"
                        for f in l7), "http-request FORWARDED for the POST")

    print(f"\nDone in {time.monotonic() - started:.0f} s. The lab stays up; try next:")
    for hint in ("bulkhead status", "bulkhead identity list", "bulkhead-lab pod list",
                 "bulkhead observe --follow   (and land ships in another terminal)",
                 "bulkhead service get default/deathstar   (its backends)",
                 "bulkhead agent --node n1 bpf lb list   (the service in the BPF maps)",
                 f"bulkhead agent --node n1 bpf policy get {by_node[0] if by_node else 'POD'}"
                 "   (the BPF policy map)",
                 "bulkhead policy trace --src k8s:org=alliance,k8s:io.kubernetes.pod.namespace="
                 "default --dst k8s:org=empire,k8s:class=deathstar,"
                 "k8s:io.kubernetes.pod.namespace=default --dport 80/TCP",
                 "bulkhead policy trace --src k8s:org=empire,k8s:class=tiefighter,"
                 "k8s:io.kubernetes.pod.namespace=default --dst k8s:org=empire,"
                 "k8s:class=deathstar,k8s:io.kubernetes.pod.namespace=default --dport 80/TCP "
                 "--http-method PUT --http-path /v1/exhaust-port",
                 "make down   (removes the lab)"):
        print(f"  {hint}")
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
