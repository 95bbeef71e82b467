"""No policy: TCP, UDP and ping pass on the same node and across nodes."""

from __future__ import annotations

import subprocess

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


def _host_tx_packets(c: Cluster, pod: str) -> int:
    """Packets the pod's host-side veth transmitted (read in its node's namespace)."""
    p = c.pods[pod]
    out = subprocess.run(["ip", "netns", "exec", c.nodes[p.node].ns, "cat",
                          f"/sys/class/net/{p.host_ifname}/statistics/tx_packets"],
                         capture_output=True, text=True, timeout=10, check=True)
    return int(out.stdout)


@pytest.mark.parametrize("client", ["tiefighter", "tiefighter2"], ids=["same-node", "cross-node"])
def test_local_delivery_goes_straight_into_the_pod(clean_policy: Cluster, client: str) -> None:
    """Packets the programs deliver to a pod (from a pod of the node, from the tunnel) enter
    the pod's namespace through the veth peer: they are not queued to the host-side veth's
    egress (its transmit count stays put while 50 echo requests arrive and are answered)."""
    c = clean_policy
    before = _host_tx_packets(c, "deathstar1")
    done = subprocess.run(["ip", "netns", "exec", c.pods[client].ns, "ping", "-q", "-c", "50",
                           "-i", "0.01", "-W", "1", c.pods["deathstar1"].ip],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert _host_tx_packets(c, "deathstar1") - before < 10
