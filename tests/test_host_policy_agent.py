"""The agent's host-policy loop against a real control plane (no BPF): what it would write
into the host firewall's maps, and that the control plane's address is always exempt."""

from __future__ import annotations

from bulkhead.v1 import (
    hostpolicy_pb2,
    hostpolicy_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
)
from nodeagent.datapath import Direction, PolicyEntry
from nodeagent.datapath.hostfw import HostDesired
from nodeagent.hostpolicy import REPLIES, TUNNEL, HostPolicyLoop, exempt_addresses
from tests.conftest import ReplicaFactory

DENY_ALL_AND_SSH = """apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: lockdown}
spec:
  nodeSelector: {}
  ingress:
  - fromNodes: [{matchLabels: {bastion: "true"}}]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
  egress: [{}]
"""


async def test_loop_turns_the_resolved_host_policy_into_map_content(
        replicas: ReplicaFactory) -> None:
    replica = await replicas()
    nodes = node_pb2_grpc.NodeServiceStub(replica.channel())
    registered = {}
    for name, ip, labels in (("n1", "192.0.2.1", []), ("n2", "192.0.2.2", ["bastion=true"])):
        registered[name] = await nodes.Register(node_pb2.RegisterNodeRequest(
            name=name, underlay_ip=ip, labels=labels))
    await policy_pb2_grpc.PolicyServiceStub(replica.channel()).Apply(
        policy_pb2.ApplyPoliciesRequest(yaml=DENY_ALL_AND_SSH))
    stub = hostpolicy_pb2_grpc.HostPolicyServiceStub(replica.channel())
    applied: list[HostDesired] = []

    async def fetch() -> hostpolicy_pb2.ResolveHostResponse:
        response: hostpolicy_pb2.ResolveHostResponse = await stub.ResolveHost(
            hostpolicy_pb2.ResolveHostRequest(node="n1"))
        return response

    async def apply(desired: HostDesired) -> int:
        applied.append(desired)
        return 1

    loop = HostPolicyLoop("n1", [replica.address], fetch, lambda: registered, apply)
    loop.exempt = exempt_addresses([replica.address])
    await loop.once()
    assert len(applied) == 1 and loop.last_error == ""
    desired = applied[0]
    assert (desired.ingress_enforced, desired.egress_enforced) == (True, True)
    n2 = registered["n2"].node_id
    assert desired.entries == ((n2, PolicyEntry(Direction.INGRESS, 6, 6, 22, 22, False)),)
    assert desired.peers == {"192.0.2.1": (1, registered["n1"].node_id),
                             "192.0.2.2": (6, n2)}
    host, _, port = replica.address.rpartition(":")
    assert desired.exempt == ((host, int(port), "TCP"),)
    assert loop.always_allowed() == [f"TCP {host}:{port} (control plane)", TUNNEL, REPLIES]
    await loop.once()
    assert len(applied) == 1, "nothing changed: nothing written"


async def test_loop_keeps_the_last_policy_when_the_fetch_fails(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    stub = hostpolicy_pb2_grpc.HostPolicyServiceStub(replica.channel())
    applied: list[HostDesired] = []

    async def fetch() -> hostpolicy_pb2.ResolveHostResponse:
        response: hostpolicy_pb2.ResolveHostResponse = await stub.ResolveHost(
            hostpolicy_pb2.ResolveHostRequest(node="ghost"))
        return response

    async def apply(desired: HostDesired) -> int:
        applied.append(desired)
        return 1

    loop = HostPolicyLoop("ghost", [replica.address], fetch, dict, apply)
    await loop.once()
    assert applied == [] and loop.last_error.startswith("NOT_FOUND")


def test_exempt_addresses_resolve_names() -> None:
    assert exempt_addresses(["127.0.0.1:9443", "localhost:9444", "[::1]:1"]) == [
        ("127.0.0.1", 9443, "TCP"), ("127.0.0.1", 9444, "TCP")]
