"""A restarted loader adopts the pinned maps, keeps enforcing, and rewrites nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from nodeagent.datapath import Datapath, Direction, IpcacheEntry, PolicyEntry, Reason, Verdict
from tests.datapath.topology import TIEFIGHTER, XWING, Cluster, curl, probe

pytestmark = pytest.mark.datapath

EMPIRE_ON_80 = [PolicyEntry(Direction.INGRESS, TIEFIGHTER, protocol=6, port_lo=80, port_hi=80)]


def test_restart_adopts_maps_and_keeps_enforcing(clean_policy: Cluster, pin_root: Path) -> None:
    c = clean_policy
    node = c.nodes["n1"]
    d1, d2 = c.pods["deathstar1"], c.pods["deathstar2"]
    tie, xwing = c.pods["tiefighter"], c.pods["xwing"]
    c.dp("n1").sync_policy(d1.ep_id, EMPIRE_ON_80, ingress_enforced=True, egress_enforced=False)
    c.dp("n2").sync_policy(d2.ep_id, EMPIRE_ON_80, ingress_enforced=True, egress_enforced=False)

    allowed: list[str] = []
    denied: list[str] = []
    stop = threading.Event()

    def client_loop() -> None:
        while not stop.is_set():
            allowed.append(probe(tie, "tcp", d1.ip, 80, timeout=1.0))
            allowed.append(probe(tie, "tcp", d2.ip, 80, timeout=1.0))
            denied.append(probe(xwing, "tcp", d1.ip, 80, timeout=0.3))

    loop = threading.Thread(target=client_loop)
    loop.start()
    try:
        time.sleep(0.5)
        old = c.dp("n1")
        old.close()  # the agent dies; programs stay attached, maps stay pinned
        node.dp = None
        new = Datapath(node.name, netns=node.ns, pin_root=pin_root)
        node.dp = new
        new.setup_node(node.underlay_ip)
        new.sync_endpoints(c.specs("n1"))
        new.sync_ipcache(c.node_ipcache("n1"))
        for pod in (p for p in c.pods.values() if p.node == "n1"):
            entries = EMPIRE_ON_80 if pod is d1 else []
            new.sync_policy(pod.ep_id, entries, ingress_enforced=pod is d1, egress_enforced=False)
        writes = new.map_writes()
        time.sleep(0.5)
    finally:
        stop.set()
        loop.join()

    assert writes == dict.fromkeys(writes, 0), f"restart rewrote entries: {writes}"
    assert len(denied) >= 2 and set(allowed) == {"ok"}, allowed
    assert set(denied) == {"timeout"}, denied

    # The new loader's programs are attached: its ring buffer sees the verdicts.
    start = time.monotonic_ns()
    assert curl(xwing, d1.ip, 80, timeout=0.5) == 28
    flows = [f for f in new.read_flows(timeout_ms=50) if f.time_ns >= start]
    assert any(
        f.src_identity == XWING and f.verdict == Verdict.DROPPED
        and f.reason == Reason.POLICY_DEFAULT_DENY
        for f in flows
    )


def test_syncs_write_only_differences(clean_policy: Cluster) -> None:
    c = clean_policy
    dp = c.dp("n2")
    base = c.node_ipcache("n2")
    extra = [
        IpcacheEntry(f"10.200.{i // 256}.{i % 256}/32", 1000 + i, "192.168.77.1")
        for i in range(2000)
    ]
    try:
        assert dp.sync_ipcache(base + extra) == 2000
        assert dp.sync_ipcache(base + extra) == 0
        extra[5] = IpcacheEntry(extra[5].prefix, 9999, "192.168.77.1")
        assert dp.sync_ipcache([*base, *extra[:-10], IpcacheEntry("10.201.0.0/16", 7)]) == 12
        listed = {e.prefix: e for e in dp.ipcache()}
        assert listed["10.200.0.5/32"].identity == 9999
        assert listed["10.201.0.0/16"] == IpcacheEntry("10.201.0.0/16", 7, None)
        assert dp.upsert_ipcache([IpcacheEntry("10.201.0.0/16", 7)]) == 0
        assert dp.delete_ipcache(["10.201.0.0/16", "10.201.0.0/16"]) == 1
    finally:
        dp.sync_ipcache(base)
    assert {e.prefix for e in dp.ipcache()} == {e.prefix for e in base} | {"192.168.77.2/32"}

    d2 = c.pods["deathstar2"]
    entries = [PolicyEntry(Direction.INGRESS, TIEFIGHTER, 6, 1000, 2000)]
    first = dp.sync_policy(d2.ep_id, entries, ingress_enforced=True, egress_enforced=False)
    assert first == 8 + 1  # eight port blocks plus the enforcement flag
    assert dp.sync_policy(d2.ep_id, entries, ingress_enforced=True, egress_enforced=False) == 0


def test_host_is_identity_1(clean_policy: Cluster) -> None:
    """Traffic from the node itself reaches pods as the host identity (to_pod program)."""
    import subprocess

    c = clean_policy
    node, d1 = c.nodes["n1"], c.pods["deathstar1"]

    def host_curl() -> int:
        return subprocess.run(
            ["ip", "netns", "exec", node.ns, "curl", "-s", "-o", "/dev/null",
             "--connect-timeout", "0.5", f"http://{d1.ip}:80/"],
            capture_output=True,
            timeout=10,
        ).returncode

    assert host_curl() == 0
    c.dp("n1").sync_policy(d1.ep_id, EMPIRE_ON_80, ingress_enforced=True, egress_enforced=False)
    assert host_curl() == 28
    host_allowed = [*EMPIRE_ON_80, PolicyEntry(Direction.INGRESS, 1)]
    c.dp("n1").sync_policy(d1.ep_id, host_allowed, ingress_enforced=True, egress_enforced=False)
    assert host_curl() == 0
