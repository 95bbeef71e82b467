"""Clustermesh sync grace in the datapath: overlay ingress lets a remote cluster's identity
that no policy entry matches pass while that cluster's grace lasts (mesh_grace map), and
drops it as before once the grace is over or when there is none."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from nodeagent.datapath import Direction, PolicyEntry, Reason, Verdict
from tests.datapath.test_policy import EMPIRE_ON_80, apply, flows_matching
from tests.datapath.topology import XWING, Cluster, curl

pytestmark = pytest.mark.datapath

REMOTE_CLUSTER = 2
REMOTE_XWING = (REMOTE_CLUSTER << 16) | 500
"""An identity of cluster 2 that the destination's node has never heard of."""
MINUTE_NS = 60 * 1_000_000_000


@pytest.fixture
def remote_xwing(clean_policy: Cluster) -> Iterator[Cluster]:
    """The xwing on n1 sends with a remote cluster's identity (its VNI); deathstar2 on n2
    admits only the empire on port 80."""
    c = clean_policy
    xwing, dst = c.pods["xwing"], c.pods["deathstar2"]
    c.dp(xwing.node).set_identity(xwing.ep_id, REMOTE_XWING)
    apply(c, dst, EMPIRE_ON_80, ingress=True, egress=False)
    try:
        yield c
    finally:
        c.dp(dst.node).sync_mesh_grace({})
        c.dp(xwing.node).set_identity(xwing.ep_id, XWING)


def test_unknown_remote_identity_passes_during_grace_only(remote_xwing: Cluster) -> None:
    c = remote_xwing
    xwing, tie, dst = c.pods["xwing"], c.pods["tiefighter"], c.pods["deathstar2"]
    dp = c.dp(dst.node)

    # no grace (the agent's --clustermesh-sync-grace 0): dropped by default deny
    start = time.monotonic_ns()
    assert curl(xwing, dst.ip, 80) == 28
    dropped = flows_matching(c, dst.node, start, saddr=xwing.ip, daddr=dst.ip, dport=80)
    assert dropped and {f.reason for f in dropped} == {Reason.POLICY_DEFAULT_DENY}
    assert dropped[-1].src_identity == REMOTE_XWING

    # cluster 2 in its grace: the connection passes, and its flow says why
    dp.sync_mesh_grace({REMOTE_CLUSTER: time.monotonic_ns() + MINUTE_NS})
    assert set(dp.mesh_grace()) == {REMOTE_CLUSTER}
    start = time.monotonic_ns()
    assert curl(xwing, dst.ip, 80) == 0
    passed = flows_matching(c, dst.node, start, saddr=xwing.ip, daddr=dst.ip, dport=80,
                            verdict=Verdict.FORWARDED, direction=Direction.INGRESS)
    assert passed and all(f.mesh_sync_grace for f in passed)
    assert not any(f.policy_match for f in passed)
    # a local identity the policy does not allow is not helped by another cluster's grace
    assert curl(tie, dst.ip, 81) == 28
    # another cluster's grace does not cover cluster 2
    dp.sync_mesh_grace({REMOTE_CLUSTER + 1: time.monotonic_ns() + MINUTE_NS})
    assert curl(xwing, dst.ip, 80) == 28

    # the grace's deadline passed (the agent has not removed the entry yet): dropped again
    dp.sync_mesh_grace({REMOTE_CLUSTER: time.monotonic_ns() - 1})
    start = time.monotonic_ns()
    assert curl(xwing, dst.ip, 80) == 28
    dropped = flows_matching(c, dst.node, start, saddr=xwing.ip, daddr=dst.ip, dport=80)
    assert dropped and {f.reason for f in dropped} == {Reason.POLICY_DEFAULT_DENY}
    assert not any(f.mesh_sync_grace for f in dropped)


def test_a_deny_entry_still_drops_during_grace(remote_xwing: Cluster) -> None:
    c = remote_xwing
    xwing, dst = c.pods["xwing"], c.pods["deathstar2"]
    apply(c, dst, [*EMPIRE_ON_80, PolicyEntry(Direction.INGRESS, REMOTE_XWING, protocol=6,
                                              port_lo=80, port_hi=80, deny=True)],
          ingress=True, egress=False)
    c.dp(dst.node).sync_mesh_grace({REMOTE_CLUSTER: time.monotonic_ns() + MINUTE_NS})
    start = time.monotonic_ns()
    assert curl(xwing, dst.ip, 80) == 28
    dropped = flows_matching(c, dst.node, start, saddr=xwing.ip, daddr=dst.ip, dport=80)
    assert dropped and {f.reason for f in dropped} == {Reason.POLICY_DENIED}
