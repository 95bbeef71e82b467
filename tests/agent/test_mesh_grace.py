"""The agent keeps its datapath's clustermesh sync graces from the subscription: a connected
remote cluster that has not synced gets one (its cluster id -> a deadline in the mesh_grace
map), which ends as soon as the remote's status says ready, or it is disconnected."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from controlplane.records.codec import MeshStatusRecord
from controlplane.store import etcd as ops
from controlplane.store.etcd import Etcd
from controlplane.store.keys import Keys
from nodeagent.datapath.loader import pin_dir
from nodeagent.datapath.maps import MeshGraceMap
from nodeagent.datapath.rawmap import RawMap
from tests.agent.cluster import Cluster

pytestmark = pytest.mark.datapath
REMOTE, REMOTE_ID = "cx", 7
OTHER, OTHER_ID = "cy", 9


def grace_map(lab: Cluster, short: str) -> dict[int, int]:
    """The node's pinned mesh_grace map, read as any operator's tool would."""
    from bcc import libbcc  # type: ignore[import-untyped]

    path = pin_dir(lab.nodes[short].name, lab.pin_root) / "mesh_grace"
    fd = libbcc.lib.bpf_obj_get(str(path).encode())
    assert fd >= 0, f"no pinned map at {path}"
    try:
        return MeshGraceMap(RawMap("mesh_grace", fd, 4, 8, 256)).list()
    finally:
        os.close(fd)


async def eventually_map(lab: Cluster, check: object, what: str) -> dict[int, int]:
    assert callable(check)
    for _ in range(300):
        got = grace_map(lab, "n1")
        if check(got):
            return got
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: mesh_grace is {grace_map(lab, 'n1')}")


async def test_a_remote_not_synced_gets_a_grace_until_it_syncs(lab: Cluster) -> None:
    assert lab.etcd is not None
    keys = Keys(f"agenttest-{lab.suffix}")
    etcd = Etcd([lab.etcd.endpoint])

    async def status(ready: bool, remote: str = REMOTE, remote_id: int = REMOTE_ID) -> None:
        await etcd.put(keys.mesh_status(remote),   # as the remote's syncer writes it
                       MeshStatusRecord(remote, 5, ready, cluster_id=remote_id).encode())
    try:
        assert grace_map(lab, "n1") == {}
        await status(ready=False)
        got = await eventually_map(lab, lambda m: REMOTE_ID in m,
                                   "a remote still syncing got no grace")
        assert set(got) == {REMOTE_ID} and got[REMOTE_ID] > time.monotonic_ns()
        await status(ready=True)
        await eventually_map(lab, lambda m: m == {}, "the grace outlived the remote's sync")
        await status(ready=False)   # out of sync again (its syncer restarted): no new grace
        await status(False, OTHER, OTHER_ID)   # applied after it: a new remote's initial sync
        got = await eventually_map(lab, lambda m: OTHER_ID in m, "a new remote got no grace")
        assert REMOTE_ID not in got, "a remote that had synced got a grace when out of sync"
        await etcd.txn([], [ops.delete(keys.mesh_status(REMOTE))])   # disconnected
        await etcd.txn([], [ops.delete(keys.mesh_status(OTHER))])    # applied after it
        await eventually_map(lab, lambda m: m == {}, "the grace outlived the disconnect")
        await status(ready=False)   # connected again: its initial sync gets a grace
        await eventually_map(lab, lambda m: set(m) == {REMOTE_ID}, "no grace after reconnect")
        await etcd.txn([], [ops.delete(keys.mesh_status(REMOTE))])
        await eventually_map(lab, lambda m: m == {}, "the grace outlived the disconnect")
    finally:
        await etcd.txn([], [ops.delete(keys.mesh_status(REMOTE)),
                            ops.delete(keys.mesh_status(OTHER))])
        await etcd.close()
