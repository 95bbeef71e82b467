"""Named ports through the API: endpoints' `ports` give `toPorts` names their numbers, on every
replica, and follow endpoints created and deleted; trace resolves them the same way."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import pytest

from bulkhead.v1 import (
    endpoint_pb2,
    endpoint_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    types_pb2,
)
from tests.conftest import Replica, ReplicaFactory, eventually

pytestmark = pytest.mark.timeout(90)

NS = "k8s:io.kubernetes.pod.namespace=default"
POLICY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: named, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: http, protocol: TCP}]}]
"""


async def create(replica: Replica, name: str, labels: list[str],
                 ports: Sequence[tuple[str, int]] = ()) -> int:
    made = await endpoint_pb2_grpc.EndpointServiceStub(replica.channel()).Create(
        endpoint_pb2.CreateEndpointRequest(
            name=name, node="n1", labels=labels,
            ports=[types_pb2.EndpointPort(name=n, port=p, protocol="TCP") for n, p in ports]))
    return int(made.identity)


async def ingress(replica: Replica, identity: int) -> list[tuple[int, str, int]]:
    try:
        found = await policy_pb2_grpc.PolicyServiceStub(replica.channel()).Resolve(
            policy_pb2.ResolvePolicyRequest(identity=identity))
    except grpc.aio.AioRpcError:
        return [(-1, "", -1)]
    return [(e.peer, e.protocol, e.port_lo) for e in found.entries if e.direction == "ingress"]


async def settles(replica: Replica, identity: int, expected: list[tuple[int, str, int]]
                  ) -> bool:
    async def check() -> bool:
        return sorted(await ingress(replica, identity)) == sorted(expected)
    return await eventually(check)


async def test_named_port_follows_endpoints(replicas: ReplicaFactory) -> None:
    a, b = await replicas(), await replicas()
    await node_pb2_grpc.NodeServiceStub(a.channel()).Register(
        node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    web = await create(a, "web", ["k8s:app=web", NS])
    db = await create(a, "db-0", ["k8s:app=db", NS], [("http", 8080)])
    await policy_pb2_grpc.PolicyServiceStub(a.channel()).Apply(
        policy_pb2.ApplyPoliciesRequest(yaml=POLICY))
    assert await settles(a, db, [(web, "TCP", 8080)])
    assert await settles(b, db, [(web, "TCP", 8080)])

    # A second pod of the identity names another number: both; the first gone: one.
    await create(a, "db-1", ["k8s:app=db", NS], [("http", 8081)])
    assert await settles(b, db, [(web, "TCP", 8080), (web, "TCP", 8081)])
    await endpoint_pb2_grpc.EndpointServiceStub(a.channel()).Delete(
        endpoint_pb2.DeleteEndpointRequest(namespace="default", name="db-0"))
    assert await settles(b, db, [(web, "TCP", 8081)])

    async def trace(port: int) -> str:
        found = await policy_pb2_grpc.PolicyServiceStub(b.channel()).Trace(
            policy_pb2.TracePolicyRequest(src_labels=["k8s:app=web", NS],
                                          dst_labels=["k8s:app=db", NS], dport=port,
                                          protocol="TCP"))
        return f"{found.verdict} {found.ingress.reason}"

    assert await trace(8081) == "ALLOWED default/named spec.ingress[0]"
    assert await trace(8080) == "DENIED default-deny"
    for replica in (a, b):
        assert replica.cp.policy_resolver.repository.resolve_all() == \
            replica.cp.policy_resolver.repository.full_recompute()
