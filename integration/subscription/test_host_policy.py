"""A node's host policy across replicas: a replica that starts after the agent's resume token
rebuilds what changed from etcd's history (controlplane/subscription/catchup.py), and the
node's host policy is part of it when it changed."""

from __future__ import annotations

import pytest

from bulkhead.v1 import policy_pb2, policy_pb2_grpc

from .cluster import Cluster
from .conftest import Agent, fresh_content

pytestmark = pytest.mark.timeout(120)

LOCKDOWN = """apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: lockdown}
spec:
  nodeSelector: {matchLabels: {role: edge}}
  ingress:
  - fromEntities: [remote-node]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
"""


async def test_resume_from_etcd_history_brings_the_changed_host_policy(
        cluster: Cluster, agents: list[Agent]) -> None:
    a = await cluster.start_replica("a")
    b_port = a.port + 1000 if a.port < 64000 else a.port - 1000
    agent = Agent("hp-1", [a.address, f"127.0.0.1:{b_port}"], "192.168.11.1")
    agent.client.node_labels = ["role=edge"]
    await agent.start()
    agents.append(agent)
    assert agent.client.state.host_policy is None     # no host rule selects it yet
    await agent.stop()
    assert agent.client.token is not None
    # After the token: a host policy selecting the node; then a replica that starts only now.
    await policy_pb2_grpc.PolicyServiceStub(cluster.channel(a.address)).Apply(
        policy_pb2.ApplyPoliciesRequest(yaml=LOCKDOWN), timeout=10)
    b = await cluster.start_replica("b", port=b_port)
    cluster.kill("a")
    agent.client._index = 1
    await agent.start()
    stats = agent.client.stats
    assert stats.replica == f"b-{cluster.tag}"
    assert stats.snapshots == 1 and stats.resumes == 1 and stats.resets == 0, stats
    got = agent.client.state.host_policy
    assert got is not None and got.node == "hp-1"
    assert got.ingress_enforced and not got.egress_enforced
    assert [(e.peer, e.protocol, e.port_lo) for e in got.entries] == [(6, 6, 22)]
    assert agent.client.state.content() == await fresh_content(b.address, "hp-1", "")
