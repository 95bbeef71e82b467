"""`icmps` rules on the real datapath: the ICMP type sits where the port would be in the policy
key, so a ping (echo request, type 8) is allowed or denied by its type, per peer."""

from __future__ import annotations

import time

import pytest

from nodeagent.datapath import Direction, PolicyEntry, Reason, Verdict
from tests.datapath.test_policy import apply, flows_matching
from tests.datapath.topology import DEATHSTAR, TIEFIGHTER, XWING, Cluster, curl, ping

pytestmark = pytest.mark.datapath

ICMP, ECHO_REQUEST, TIMESTAMP = 1, 8, 13
TARGETS = pytest.mark.parametrize(
    "target", ["deathstar1", "deathstar2"], ids=["same-node", "cross-node"]
)


def icmp(direction: Direction, peer: int, type_: int, deny: bool = False) -> PolicyEntry:
    return PolicyEntry(direction, peer, ICMP, type_, type_, deny=deny)


@TARGETS
def test_ingress_echo_allowed_by_type(clean_policy: Cluster, target: str) -> None:
    c = clean_policy
    dst, tie, xwing = c.pods[target], c.pods["tiefighter"], c.pods["xwing"]
    start = time.monotonic_ns()
    apply(c, dst, [icmp(Direction.INGRESS, TIEFIGHTER, ECHO_REQUEST),
                   icmp(Direction.INGRESS, XWING, TIMESTAMP)], ingress=True, egress=False)
    assert ping(tie, dst.ip), "echo request allowed from the tiefighter (its reply by conntrack)"
    assert not ping(xwing, dst.ip), "the xwing may only send timestamp requests"
    assert curl(tie, dst.ip, 80) == 28, "an ICMP type allows no TCP port"
    dropped = flows_matching(c, dst.node, start, saddr=xwing.ip, daddr=dst.ip, protocol=ICMP)
    assert dropped and {f.reason for f in dropped} == {Reason.POLICY_DEFAULT_DENY}
    assert dropped[-1].src_identity == XWING and dropped[-1].dst_identity == DEATHSTAR


@TARGETS
def test_ingress_echo_denied_by_type(clean_policy: Cluster, target: str) -> None:
    c = clean_policy
    dst, tie, xwing = c.pods[target], c.pods["tiefighter"], c.pods["xwing"]
    start = time.monotonic_ns()
    apply(c, dst, [PolicyEntry(Direction.INGRESS, 0),
                   icmp(Direction.INGRESS, XWING, ECHO_REQUEST, deny=True)],
          ingress=True, egress=False)
    assert not ping(xwing, dst.ip)
    assert ping(tie, dst.ip)
    assert curl(xwing, dst.ip, 80) == 0, "the deny names ICMP echo only"
    dropped = flows_matching(c, dst.node, start, saddr=xwing.ip, daddr=dst.ip, protocol=ICMP,
                             verdict=Verdict.DROPPED)
    assert dropped and {f.reason for f in dropped} == {Reason.POLICY_DENIED}


def test_egress_echo_reply_type_is_not_echo_request(clean_policy: Cluster) -> None:
    """Type 0 (EchoReply) is one type, not every ICMP type: it does not let a ping out."""
    c = clean_policy
    tie, dst = c.pods["tiefighter"], c.pods["deathstar2"]
    apply(c, tie, [icmp(Direction.EGRESS, DEATHSTAR, 0)], ingress=False, egress=True)
    assert not ping(tie, dst.ip)
    apply(c, tie, [icmp(Direction.EGRESS, DEATHSTAR, ECHO_REQUEST)], ingress=False, egress=True)
    assert ping(tie, dst.ip)
    assert curl(tie, dst.ip, 80) == 28
