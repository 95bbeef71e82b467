"""Endpoint lifecycle: add, dump, remove leaves nothing; bad input leaves nothing."""

from __future__ import annotations

import contextlib

import pytest
from pyroute2 import netns

from nodeagent.datapath import Direction, EndpointSpec, IpcacheEntry, PolicyEntry
from nodeagent.datapath.netlink import link_index
from tests.datapath.topology import Cluster, Pod, curl

pytestmark = pytest.mark.datapath


def test_add_and_remove_endpoint_leaves_nothing(clean_policy: Cluster) -> None:
    c = clean_policy
    dp = c.dp("n2")
    ns = f"bh{c.suffix}-tmp"
    netns.create(ns)
    try:
        spec = EndpointSpec(ep_id=99, ip="10.2.0.99", identity=301, netns=ns, host_ifname="lxc99")
        info = dp.add_endpoint(spec)
        assert info in dp.endpoints() and info.ifindex == link_index(dp.ipr, "lxc99")
        dp.upsert_ipcache([IpcacheEntry("10.2.0.99/32", 301)])
        c.dp("n1").upsert_ipcache([IpcacheEntry("10.2.0.99/32", 301, "192.168.77.2")])
        dp.sync_policy(99, [PolicyEntry(Direction.EGRESS, 0)], True, True)
        tmp_pod = Pod("tmp", ns, "n2", spec.ip, 301, 99, "lxc99")
        assert curl(tmp_pod, c.pods["deathstar1"].ip, 80) == 0  # cross-node, egress allowed
        assert any(k.ep_id == 99 for k in dp.counters())

        assert dp.remove_endpoint(99)
        assert all(e.ep_id != 99 for e in dp.endpoints())
        assert dp.policy(99) == []
        assert dp.counters(99) == []
        assert link_index(dp.ipr, "lxc99") is None
        assert dp.remove_endpoint(99) is False
    finally:
        with contextlib.suppress(Exception):
            dp.remove_endpoint(99)
        dp.delete_ipcache(["10.2.0.99/32"])
        c.dp("n1").delete_ipcache(["10.2.0.99/32"])
        netns.remove(ns)


def test_missing_namespace_is_a_clear_error_and_leaves_nothing(cluster: Cluster) -> None:
    dp = cluster.dp("n1")
    before = dp.endpoints()
    spec = EndpointSpec(98, "10.1.0.98", 301, f"bh{cluster.suffix}-nope", "lxc98")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dp.add_endpoint(spec)
    assert link_index(dp.ipr, "lxc98") is None
    assert dp.endpoints() == before
    with pytest.raises(ValueError, match="15 characters"):
        dp.add_endpoint(EndpointSpec(98, "10.1.0.98", 301, "x", "a-very-long-ifname"))
