"""A stalled replica must never empty the cluster (issue: node leases under a stalled control
plane). Replicas are real processes; a stall is SIGSTOP, or one huge policy apply."""

from __future__ import annotations

import asyncio
import signal

from bulkhead.v1 import policy_pb2, policy_pb2_grpc
from controlplane.store.keys import Keys

from .cluster import Cluster
from .conftest import Agent, eventually

TTL = 4


async def node_state(cluster: Cluster, node: str) -> dict[str, int]:
    """Every key that hangs on the node's lease, with its create revision: a key that was
    deleted and written again, even within a second, shows a new one."""
    assert cluster.etcd is not None
    keys = Keys(cluster.cluster_name)
    out: dict[str, int] = {}
    for prefix in (keys.nodes, keys.endpoints, keys.ipcache, keys.identity_refs_prefix):
        kvs, _, _ = await cluster.etcd.range(prefix)
        out.update({kv.key: kv.create_revision for kv in kvs})
    assert keys.node(node) in out
    return out


async def test_a_stalled_replica_loses_no_endpoint(cluster: Cluster,
                                                   agents: list[Agent]) -> None:
    r1 = await cluster.start_replica("r1", "--node-ttl", str(TTL))
    r2 = await cluster.start_replica("r2", "--node-ttl", str(TTL))
    agent = Agent("n1", [r1.address, r2.address], "192.0.2.1", first=0)
    agents.append(agent)
    await agent.start()
    assert agent.client.stats.replica == f"r1-{cluster.tag}"
    for i in range(10):
        await cluster.create_endpoint(r2.address, "n1", f"ep{i}", [f"k8s:app=a{i % 3}"])
    before = await node_state(cluster, "n1")
    assert len(before) == 1 + 3 * 10   # the node; endpoints, ipcache entries, references

    r1.process.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(2 * TTL)
        # The agent noticed within a fraction of the TTL and moved to the other replica.
        await eventually(lambda: agent.client.stats.replica == f"r2-{cluster.tag}"
                         and agent.client.synced.is_set(), "the agent did not move to r2")
        assert await node_state(cluster, "n1") == before
    finally:
        r1.process.send_signal(signal.SIGCONT)

    assert await node_state(cluster, "n1") == before
    assert agent.client.stats.registrations == 1
    assert agent.client.lease.failovers >= 1


async def test_a_lost_lease_is_registered_again(cluster: Cluster, agents: list[Agent]) -> None:
    """With its only replica stalled, nothing can renew the lease: once the replica is back,
    the agent finds its node gone and registers it again, keeping its id and pod CIDR."""
    r1 = await cluster.start_replica("r1", "--node-ttl", str(TTL))
    agent = Agent("n1", [r1.address], "192.0.2.1")
    agents.append(agent)
    await agent.start()
    node = agent.client.state.nodes["n1"]
    r1.process.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(2 * TTL)
    finally:
        r1.process.send_signal(signal.SIGCONT)
    await eventually(lambda: agent.client.stats.registrations == 2, "not registered again")
    await eventually(lambda: agent.client.synced.is_set()
                     and "n1" in agent.client.state.nodes, "not synced again")
    again = agent.client.state.nodes["n1"]
    assert (again.node_id, again.pod_cidr) == (node.node_id, node.pod_cidr)


async def test_a_huge_policy_apply_does_not_stall_the_leases(cluster: Cluster,
                                                              agents: list[Agent]) -> None:
    """A 1 MiB file takes seconds to parse; the replica must go on renewing leases meanwhile
    (its only replica: no other could take over)."""
    r1 = await cluster.start_replica("r1", "--node-ttl", "2")
    agent = Agent("n1", [r1.address], "192.0.2.1")
    agents.append(agent)
    await agent.start()
    await cluster.create_endpoint(r1.address, "n1", "ep", ["k8s:app=a"])
    before = await node_state(cluster, "n1")
    # Invalid YAML is the slowest case: the parser reads it all before it gives up.
    text = "a: [" + ",".join(["1"] * 300_000) + "\n"
    stub = policy_pb2_grpc.PolicyServiceStub(cluster.channel(r1.address))
    for _ in range(2):
        try:
            await stub.Apply(policy_pb2.ApplyPoliciesRequest(yaml=text), timeout=60)
        except Exception as exc:  # refused as invalid: what matters is the lease
            assert "INVALID_ARGUMENT" in str(exc)
    assert await node_state(cluster, "n1") == before
    assert agent.client.stats.registrations == 1
