"""`toServices` through the API: a policy's service peers follow the services in etcd — a
service applied, relabelled, reselected or deleted re-resolves the policy on every replica,
backends coming and going follow by identity, and an agent receives the entries."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from bulkhead.v1 import (
    node_pb2,
    node_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    service_pb2,
    service_pb2_grpc,
)
from nodeagent.subscription.client import SubscriptionClient
from tests.conftest import Replica, ReplicaFactory, eventually
from tests.test_policy_api import make_endpoint

pytestmark = pytest.mark.timeout(90)

NS = "k8s:io.kubernetes.pod.namespace=default"
POLICY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: to-db, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toServices:
    - k8sService: {serviceName: db, namespace: default}
    toPorts: [{ports: [{port: '5432', protocol: TCP}]}]
"""
BY_LABELS = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: to-data, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toServices:
    - k8sServiceSelector: {selector: {matchLabels: {team: data}}}
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata: {{name: db, labels: {{team: {team}}}}}
spec:
  selector: {{app: {app}}}
  ports: [{{port: 5432}}]
"""


async def apply_service(replica: Replica, app: str, team: str = "data") -> None:
    await service_pb2_grpc.ServiceServiceStub(replica.channel()).Apply(
        service_pb2.ApplyServicesRequest(yaml=SERVICE.format(app=app, team=team)))


async def egress(replica: Replica, identity: int) -> list[tuple[int, int, str]]:
    """(peer, port, verdict) of the identity's egress entries, once its resolver has them."""
    try:
        found = await policy_pb2_grpc.PolicyServiceStub(replica.channel()).Resolve(
            policy_pb2.ResolvePolicyRequest(identity=identity))
    except grpc.aio.AioRpcError:
        return [(-1, -1, "unknown")]
    return [(e.peer, e.port_lo, e.verdict) for e in found.entries if e.direction == "egress"]


async def test_to_services_follows_the_service(replicas: ReplicaFactory) -> None:
    a, b = await replicas(), await replicas()
    await node_pb2_grpc.NodeServiceStub(a.channel()).Register(
        node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    web = await make_endpoint(a, "n1", "web", ["k8s:app=web", NS])
    db = await make_endpoint(a, "n1", "db-0", ["k8s:app=db", NS])
    cache = await make_endpoint(a, "n1", "cache-0", ["k8s:app=cache", NS])
    client = SubscriptionClient("n1", [b.address], underlay_ip="192.0.2.1", register=False,
                                backoff=(0.1, 1.0))
    task = asyncio.create_task(client.run())
    try:
        await asyncio.wait_for(client.synced.wait(), 20)
        await policy_pb2_grpc.PolicyServiceStub(a.channel()).Apply(
            policy_pb2.ApplyPoliciesRequest(yaml=POLICY))
        # No service yet: egress enforced, nothing allowed.
        assert await settles(a, web, []) and await settles(b, web, [])
        assert await eventually(lambda: _true(client.state.policies[web].egress_enforced))

        await apply_service(a, "db")
        assert await settles(a, web, [(db, 5432, "allow")])
        assert await settles(b, web, [(db, 5432, "allow")])
        assert await eventually(lambda: _true(
            [(e.peer, e.port_lo) for e in client.state.policies[web].entries] == [(db, 5432)]))

        # A second backend with another identity, then the service reselected: both follow.
        db2 = await make_endpoint(a, "n1", "db-1", ["k8s:app=db", "k8s:v=2", NS])
        assert await eventually(lambda: _is(egress(b, web), sorted(
            [(db, 5432, "allow"), (db2, 5432, "allow")])))
        await apply_service(a, "cache")
        assert await eventually(lambda: _is(egress(b, web), [(cache, 5432, "allow")]))
        assert await eventually(lambda: _true(
            [e.peer for e in client.state.policies[web].entries] == [cache]))

        # Selected by the service's labels: relabelling the service takes it out.
        await policy_pb2_grpc.PolicyServiceStub(a.channel()).Apply(
            policy_pb2.ApplyPoliciesRequest(yaml=BY_LABELS))
        assert await eventually(lambda: _is(egress(b, web), [(cache, 0, "allow"),
                                                             (cache, 5432, "allow")]))
        await apply_service(a, "cache", team="other")
        assert await eventually(lambda: _is(egress(b, web), [(cache, 5432, "allow")]))

        await service_pb2_grpc.ServiceServiceStub(a.channel()).Delete(
            service_pb2.DeleteServiceRequest(service=service_pb2.ServiceRef(
                namespace="default", name="db")))
        assert await settles(a, web, []) and await settles(b, web, [])
        assert a.cp.policy_resolver.repository.resolve_all() == \
            a.cp.policy_resolver.repository.full_recompute()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def settles(replica: Replica, identity: int, expected: list[tuple[int, int, str]]
                  ) -> bool:
    return await eventually(lambda: _is(egress(replica, identity), expected))


async def _is(pending: object, expected: list[tuple[int, int, str]]) -> bool:
    return sorted(await pending) == sorted(expected)  # type: ignore[misc]


async def _true(value: bool) -> bool:
    return value
