"""Subscription status across replicas: one record per replica in etcd, read by every replica."""

from __future__ import annotations

import pytest

from bulkhead.v1 import subscription_pb2 as pb
from bulkhead.v1 import subscription_pb2_grpc

from .cluster import Cluster
from .conftest import WAIT, Agent, eventually

pytestmark = pytest.mark.timeout(120)


async def test_other_replica_sees_nodes_waits_on_them_and_keeps_final_counters(
        cluster: Cluster, agents: list[Agent]) -> None:
    a = await cluster.start_replica("a")
    b = await cluster.start_replica("b")
    for i in range(4):
        agents.append(await Agent(f"st-{i}", [a.address], f"192.168.9.{i + 1}").start())
    ep = await cluster.create_endpoint(b.address, "st-0", "web", ["k8s:app=web"])
    revision = await cluster.revision()

    # Replica b serves none of them; it reads replica a's record.
    seen: dict[str, pb.NodeSubscription] = {}

    async def b_sees_all() -> bool:
        nonlocal seen
        seen = await cluster.subscriptions(b.address)
        return all(seen.get(f"st-{i}") is not None and seen[f"st-{i}"].connected
                   and seen[f"st-{i}"].acked_revision >= revision for i in range(4))

    await eventually(b_sees_all, "replica b lists the four nodes of replica a", interval=0.1)
    assert {s.replica for s in seen.values()} == {f"a-{cluster.tag}"}
    assert all(s.snapshots == 1 for s in seen.values())

    # A convergence wait on b for a node served by a: converges, names only that node.
    admin = subscription_pb2_grpc.SubscriptionAdminServiceStub(cluster.channel(b.address))
    waited = await admin.WaitForRevision(pb.WaitForRevisionRequest(
        revision=revision, identities=[ep.identity], timeout_seconds=WAIT), timeout=WAIT + 5)
    assert waited.converged and list(waited.nodes) == ["st-0"], waited

    # The four nodes are one etcd key of replica a, not four.
    assert cluster.etcd is not None
    prefix = f"/bulkhead/v1/{cluster.cluster_name}/"
    records, _, _ = await cluster.etcd.range(prefix + "subscription-replicas/")
    assert [kv.key.rsplit("/", 1)[-1] for kv in records] == [f"a-{cluster.tag}"]
    per_node, _, _ = await cluster.etcd.range(prefix + "subscriptions/")
    assert per_node == []

    # A clean disconnect leaves the node's final status, counters included, visible on b.
    await agents[1].stop()

    async def b_sees_gone() -> bool:
        nonlocal seen
        seen = await cluster.subscriptions(b.address)
        gone = seen.get("st-1")
        return gone is not None and not gone.connected

    await eventually(b_sees_gone, "replica b shows st-1 disconnected", interval=0.1)
    assert seen["st-1"].snapshots == 1 and seen["st-1"].replica == ""
    assert seen["st-0"].connected and seen["st-0"].replica == f"a-{cluster.tag}"
