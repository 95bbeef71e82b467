"""Clustermesh sync grace: the agent's bookkeeping (nodeagent/meshgrace.py) on a clock the test
moves, and the subscription telling agents each remote cluster's sync state (real etcds,
real control planes)."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from bulkhead.v1 import clustermesh_pb2
from integration.etcd_process import EtcdProcess
from integration.subscription.conftest import eventually
from nodeagent.meshgrace import NSEC, RemoteSync, SyncGrace
from tests.test_clustermesh import Mesh, connect, mesh, mesh_stub, remote_etcd, workload

__all__ = ["mesh", "remote_etcd"]   # fixtures


class Clock:
    def __init__(self) -> None:
        self.ns = 1_000 * NSEC

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * NSEC)


def syncing(*remotes: tuple[str, int, bool]) -> dict[str, RemoteSync]:
    return {name: RemoteSync(name, cid, ready) for name, cid, ready in remotes}


def test_a_remote_not_synced_gets_a_grace_that_its_sync_ends_at_once() -> None:
    clock = Clock()
    grace = SyncGrace(30, clock)
    grace.update(syncing(("c2", 2, False), ("c3", 3, True)))
    assert grace.desired() == {2: clock.ns + 30 * NSEC}   # c3 synced already: no grace
    clock.advance(10)
    grace.update(syncing(("c2", 2, False), ("c3", 3, True)))   # still syncing: same deadline
    assert grace.desired() == {2: clock.ns + 20 * NSEC}
    grace.update(syncing(("c2", 2, True), ("c3", 3, True)))
    assert grace.desired() == {} and grace.status() == {}
    assert grace.expire() == []


def test_a_grace_that_times_out_ends_with_a_warning_naming_the_remote() -> None:
    clock = Clock()
    grace = SyncGrace(30, clock)
    grace.update(syncing(("c2", 2, False)))
    clock.advance(29)
    assert grace.expire() == [] and grace.status() == {"c2": 1.0}
    clock.advance(1)
    with capture_logs() as logs:
        assert grace.expire() == ["c2"]
    assert grace.desired() == {}
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [(e["remote"], e["cluster_id"]) for e in warnings] == [("c2", 2)]
    # still not synced: no second grace; synced and then out of sync again: none either (its
    # last-known state, whose identities the node knows, stays in force)
    grace.update(syncing(("c2", 2, False)))
    assert grace.desired() == {}
    grace.update(syncing(("c2", 2, True)))
    clock.advance(100)
    grace.update(syncing(("c2", 2, False)))
    assert grace.desired() == {}
    grace.update({})                            # disconnected, connected again: a new sync
    grace.update(syncing(("c2", 2, False)))
    assert grace.desired() == {2: clock.ns + 30 * NSEC}


def test_disconnect_ends_the_grace_and_zero_disables_it() -> None:
    clock = Clock()
    grace = SyncGrace(30, clock)
    grace.update(syncing(("c2", 2, False)))
    grace.update({})
    assert grace.desired() == {}
    off = SyncGrace(0, clock)
    off.update(syncing(("c2", 2, False)))
    assert off.desired() == {} and off.expire() == []
    with pytest.raises(ValueError, match="sync grace"):
        SyncGrace(-1, clock)


async def test_agents_learn_each_remote_clusters_sync_state(
        etcd: EtcdProcess, remote_etcd: EtcdProcess, mesh: Mesh) -> None:
    local = await mesh.cluster(etcd, 1, "10.1.0.0/16")
    remote = await mesh.cluster(remote_etcd, 2, "10.2.0.0/16")
    name = remote.cp.config.cluster_name
    xwing = await workload(remote, "r1", "192.0.2.2", "xwing", ["k8s:org=alliance"])
    agent = await mesh.agent(local, "l1")
    state = agent.client.state
    assert state.remotes == {}
    await connect(local, remote, remote_etcd)

    # ready arrives after the remote's state (one revision order): the agent has it then
    def synced() -> bool:
        sync = state.remotes.get(name)
        return sync is not None and sync.ready
    await eventually(synced, "the agent never learnt that the remote cluster synced")
    assert state.remotes[name].cluster_id == 2
    assert xwing.identity in state.identities and f"{xwing.ip}/32" in state.ipcache

    # a later agent gets it with its snapshot
    late = await mesh.agent(local, "l2")
    await eventually(lambda: name in late.client.state.remotes, "no remote in the snapshot")
    assert late.client.state.remotes[name].ready

    remote_etcd.stop()
    await eventually(lambda: not state.remotes[name].ready,
                     "the agent never learnt that the remote fell out of sync")
    remote_etcd.start()
    await eventually(synced, "the agent never learnt that the remote synced again")

    await mesh_stub(local).Disconnect(clustermesh_pb2.DisconnectClusterRequest(name=name))
    await eventually(lambda: name not in state.remotes and name not in late.client.state.remotes,
                     "disconnect left the remote's sync state on the agents")
