"""Benchmark: the datapath in a lab, across nodes, against the same lab path without Bulkhead.

Two labs run side by side, each with a server pod on n1 and a client pod on n2:
(a) `--datapath=none`: plain kernel routing over VXLAN, no Bulkhead programs;
(b) Bulkhead (bpf), with a CiliumNetworkPolicy that allows the client to the server's ports,
    applied with `bulkhead policy apply -f FILE --wait` (a third port is checked to be dropped,
    so (b) really runs with ingress enforcement on).
Measured in both, alternating a/b for ROUNDS rounds on this shared machine, medians reported:
- iperf3 TCP throughput, client -> server, one stream;
- TCP request/response rate (bench/rr.py): `rr` = 64-byte request/reply round trips over one
  connection; `crr` = a new connection per request/reply;
- in (b) also `crr` through a ClusterIP Service whose one backend is the server (the issue's
  "with and without a service in between"), from a second client pod on n2 (a closed
  connection's conntrack entry lingers; the two clients never share a tuple).
Then, in lab (b): the RSS growth of n1's agent while its ipcache grows to 10,000 entries
(endpoints created through the control plane on agent-less nodes; bench/agent_memory.py), and
the 100,000-entry ipcache write timing (bench/datapath_maps.py, run as is).

Targets (DESIGN.md §9): (b)/(a) >= 0.90 for throughput and request rate; 100,000 ipcache
entries <= 1 s; <= 10 KiB per endpoint.  Needs root, bcc, iperf3 and curl.  Labs get unique
names and a temporary BULKHEAD_STATE_DIR and are taken down even on failure.
Last line: ``datapath throughput ratio: <b/a>``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import agent_memory  # noqa: E402  (bench/ is sys.path[0] when run as a script)
from labbench import (  # noqa: E402
    Samples,
    apply_allow_policy,
    apply_service,
    run_in,
    run_script,
    say,
)

from integration.lab import credentials as lab_credentials  # noqa: E402
from integration.lab import processes  # noqa: E402
from integration.lab.lab import Lab  # noqa: E402
from integration.lab.state import PodState  # noqa: E402

ROUNDS = 5
IPERF_SECONDS = 3
RR_SECONDS = 2.0
IPERF_PORT, RR_PORT, DENIED_PORT, SVC_PORT = 5201, 5202, 5203, 80
ENDPOINTS = 10_000
POLICY = f"""\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: bench-allow
  namespace: default
spec:
  description: the benchmark client may reach the server's iperf3 and request/response ports
  endpointSelector:
    matchLabels:
      app: bench-server
  ingress:
  - fromEndpoints:
    - matchLabels:
        app: bench-client
    toPorts:
    - ports:
      - port: "{IPERF_PORT}"
        protocol: TCP
      - port: "{RR_PORT}"
        protocol: TCP
"""


@dataclass
class Side(Samples):
    """One lab under test and what was measured in it."""

    key: str
    lab: Lab
    server: PodState | None = None
    client: PodState | None = None
    vip_client: PodState | None = None
    cluster_ip: str = ""
    pids: list[int] = field(default_factory=list)


def start_lab(side: Side, datapath: str) -> None:
    say(f"lab {side.lab.name}: --datapath={datapath}")
    side.lab.up(2, datapath=datapath)
    side.server = side.lab.pod_create("server", "n1", "default", ["app=bench-server"])
    side.client = side.lab.pod_create("client", "n2", "default", ["app=bench-client"])
    if datapath == "bpf":
        side.vip_client = side.lab.pod_create("client-vip", "n2", "default",
                                              ["app=bench-client"])
    directory = side.lab.state().directory
    side.pids.append(processes.start(
        ["ip", "netns", "exec", side.server.netns, "iperf3", "-s", "-p", str(IPERF_PORT)],
        directory / "iperf3.log"))
    side.pids.append(processes.start_ready(
        ["ip", "netns", "exec", side.server.netns, sys.executable, str(ROOT / "bench/rr.py"),
         "server", str(RR_PORT)], directory / "rr.log"))


def apply_policy(side: Side) -> None:
    """The allowing policy, waited for on every node; then prove enforcement is on."""
    assert side.server is not None and side.client is not None
    say(apply_allow_policy(side.lab, POLICY, side.client, side.server.ip, DENIED_PORT))
    side.cluster_ip = apply_service(side.lab, "bench-svc", SVC_PORT, RR_PORT)


def measure(side: Side) -> None:
    assert side.server is not None and side.client is not None
    ip = side.server.ip
    out = run_in(side.client, "iperf3", "-c", ip, "-p", str(IPERF_PORT), "-t",
                   str(IPERF_SECONDS), "-O", "1", "-J", timeout=IPERF_SECONDS + 30)
    bps = float(json.loads(out)["end"]["sum_received"]["bits_per_second"])
    side.record("throughput", bps)
    for mode in ("rr", "crr"):
        got = json.loads(run_in(side.client, sys.executable, str(ROOT / "bench/rr.py"),
                                  "client", ip, str(RR_PORT), str(RR_SECONDS), mode))
        side.record(mode, got["rate"])
    vip = ""
    if side.vip_client is not None:
        got = json.loads(run_in(side.vip_client, sys.executable, str(ROOT / "bench/rr.py"),
                                "client", side.cluster_ip, str(SVC_PORT), str(RR_SECONDS),
                                "crr"))
        side.record("crr vip", got["rate"])
        vip = f", crr via ClusterIP {got['rate']:.0f}/s"
    say(f"({side.key}) {bps / 1e9:.2f} Gbit/s, rr {side.results['rr'][-1]:.0f}/s, "
        f"crr {side.results['crr'][-1]:.0f}/s{vip}")


def stop_side(side: Side) -> None:
    for pid in side.pids:
        processes.stop(pid)
    side.lab.down()


def main() -> None:
    tag = secrets.token_hex(2)
    state_dir = tempfile.mkdtemp(prefix="bulkhead-bench-")
    os.environ["BULKHEAD_STATE_DIR"] = state_dir
    a = Side("a", Lab(f"ba{tag}", say=lambda m: None))
    b = Side("b", Lab(f"bb{tag}", say=lambda m: None))
    lines: list[str] = []
    try:
        start_lab(a, "none")
        start_lab(b, "bpf")
        apply_policy(b)
        for i in range(ROUNDS):
            for side in (a, b) if i % 2 == 0 else (b, a):
                measure(side)
        say(f"agent memory: growing the ipcache by {ENDPOINTS} endpoints")
        node = b.lab.state().nodes["n1"]
        memory = agent_memory.measure(b.lab.state().controlplane, node.agent_pid, node.socket,
                                      ENDPOINTS, tag,
                                      credentials=lab_credentials.admin(b.lab.state()))
    finally:
        for side in (a, b):
            try:
                stop_side(side)
            except Exception as exc:  # take down the other lab regardless
                print(f"bench: taking down {side.lab.name} failed: {exc}", file=sys.stderr)
        shutil.rmtree(state_dir, ignore_errors=True)
    say("100,000 ipcache entries (bench/datapath_maps.py)")
    lines += run_script("datapath_maps.py", timeout=120)

    def each(name: str, side: Side, scale: float, unit: str) -> str:
        return ", ".join(f"{v / scale:.2f}" for v in side.results[name]) + f" {unit}"

    print(f"rounds: {ROUNDS}, alternating a/b; medians below")
    for side, what in ((a, "plain VXLAN routing, no programs"),
                       (b, "Bulkhead datapath, allowing policy")):
        print(f"({side.key}) {what}:")
        print(f"    throughput {side.median('throughput') / 1e9:.2f} Gbit/s "
              f"[{each('throughput', side, 1e9, 'Gbit/s')}]")
        print(f"    rr  (64 B round trips, one connection) {side.median('rr'):.0f}/s "
              f"[{each('rr', side, 1, '/s')}]")
        print(f"    crr (new connection per request)        {side.median('crr'):.0f}/s "
              f"[{each('crr', side, 1, '/s')}]")
        if "crr vip" in side.results:
            print(f"    crr through the ClusterIP {side.cluster_ip}:{SVC_PORT}        "
                  f"{side.median('crr vip'):.0f}/s [{each('crr vip', side, 1, '/s')}]")
    # The machine is shared: contention only ever slows a sample down, so the best sample of
    # each side and the ratios of the a/b pairs measured back to back are printed as well.
    for name, of_a in (("throughput", "throughput"), ("rr", "rr"), ("crr", "crr"),
                       ("crr vip", "crr")):
        pairs = [bv / av for av, bv in zip(a.results[of_a], b.results[name], strict=True)]
        print(f"{name}: best b/a {max(b.results[name]) / max(a.results[of_a]):.2f}; "
              f"per-round b/a [{', '.join(f'{r:.2f}' for r in pairs)}], "
              f"median {statistics.median(pairs):.2f}")
    rr_ratio = b.median("rr") / a.median("rr")
    crr_ratio = b.median("crr") / a.median("crr")
    vip_ratio = b.median("crr vip") / a.median("crr")
    print(f"request/response rate ratio (rr, one connection): {rr_ratio:.2f} (target >= 0.90)")
    print(f"request/response rate ratio (crr, new connections): {crr_ratio:.2f} "
          "(target >= 0.90)")
    print(f"request/response rate ratio (crr through a ClusterIP vs plain routing to the pod):"
          f" {vip_ratio:.2f} (target >= 0.90)")
    print(f"agent ipcache entries: {memory['entries_before']:.0f} -> "
          f"{memory['entries_after']:.0f} ({ENDPOINTS} endpoints created in "
          f"{memory['create_seconds']:.1f} s)")
    print(f"agent RSS: {memory['rss_before_kib'] / 1024:.1f} MiB -> "
          f"{memory['rss_after_kib'] / 1024:.1f} MiB")
    print(f"agent RSS per endpoint @10k ipcache entries: {memory['kib_per_endpoint']:.2f} KiB "
          f"(growth; target <= 10 KiB); whole RSS / entries: "
          f"{memory['kib_per_entry_total']:.2f} KiB")
    for line in lines:
        print(line)
    print(f"datapath throughput ratio: {b.median('throughput') / a.median('throughput'):.2f}")


if __name__ == "__main__":
    main()
