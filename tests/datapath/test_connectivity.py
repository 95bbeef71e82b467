"""No policy: TCP, UDP and ping pass on the same node and across nodes."""

from __future__ import annotations

import pytest

from nodeagent.datapath import netlink
from tests.datapath.topology import Cluster, curl, ping, probe

pytestmark = pytest.mark.datapath


@pytest.mark.parametrize("target", ["deathstar1", "deathstar2"], ids=["same-node", "cross-node"])
@pytest.mark.parametrize("client", ["tiefighter", "xwing"])
def test_no_policy_everything_passes(clean_policy: Cluster, client: str, target: str) -> None:
    c = clean_policy
    src, dst = c.pods[client], c.pods[target]
    assert curl(src, dst.ip, 80) == 0
    assert probe(src, "tcp", dst.ip, 81) == "ok"
    assert probe(src, "udp", dst.ip, 5353) == "ok"
    assert ping(src, dst.ip)


def test_filters_attached_once(cluster: Cluster) -> None:
    """Re-adding an endpoint replaces its filters instead of stacking new ones."""
    pod = cluster.pods["tiefighter"]
    dp = cluster.dp(pod.node)
    before = dp.add_endpoint(pod.spec())
    after = dp.add_endpoint(pod.spec())
    assert before == after
    assert netlink.filters(dp.ipr, after.ifindex, "ingress") == ["from_pod"]
    assert netlink.filters(dp.ipr, after.ifindex, "egress") == ["to_pod"]
