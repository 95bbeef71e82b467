"""Item 3 of issue 14: every method is in the role table; a node certificate speaks only for
its own node (PERMISSION_DENIED naming the node and the method, nothing written)."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

import bulkhead.v1
from bulkhead.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    endpoint_pb2,
    endpoint_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
)
from controlplane.api.authz import TABLE
from controlplane.pki import certs
from tests.security.tlsfixtures import TlsReplica, TlsReplicaFactory

AGENT_OWN = {"bulkhead.v1.AgentService", "bulkhead.v1.FqdnService"}
"""The agent's own API (served by the agent, not the control plane: item 5; FqdnService is
the agent's FQDN cache, issue 16)."""


def served_methods() -> set[str]:
    """Every method of every service the control plane registers, from the protos."""
    found: set[str] = set()
    modules = [importlib.import_module(f"bulkhead.v1.{m.name}")
               for m in pkgutil.iter_modules(bulkhead.v1.__path__) if m.name.endswith("_pb2")]
    for module in [*modules, health_pb2, reflection_pb2]:
        for service in module.DESCRIPTOR.services_by_name.values():
            if service.full_name in AGENT_OWN:
                continue
            found |= {f"{service.full_name}/{m.name}" for m in service.methods}
    return found


def test_every_served_method_is_in_the_table_and_nothing_else() -> None:
    served = served_methods()
    assert "bulkhead.v1.NodeService/Register" in served  # the walk sees the protos
    assert sorted(served - set(TABLE)) == []
    assert sorted(set(TABLE) - served) == []


async def snapshot(replica: TlsReplica) -> dict[str, bytes]:
    """The cluster's records, less what replicas rewrite on their own (presence, status)."""
    keys = replica.cp.keys
    kvs, _, _ = await replica.cp.etcd.range(keys.prefix)
    moving = (keys.replicas, keys.subscription_records, keys.subscription_finals)
    return {kv.key: kv.value for kv in kvs if not kv.key.startswith(moving)}


async def denied(call: Awaitable[Any], code: grpc.StatusCode = grpc.StatusCode.PERMISSION_DENIED
                 ) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    assert refused.value.code() == code, refused.value.details()
    return refused.value.details() or ""


@pytest.fixture
async def cluster(tls_replicas: TlsReplicaFactory) -> AsyncIterator[TlsReplica]:
    yield await tls_replicas()


class As:
    """Stubs over a channel carrying one credential."""

    def __init__(self, replica: TlsReplica, name: str, role: str) -> None:
        self.channel = replica.channel(replica.credential(name, role))
        self.nodes = node_pb2_grpc.NodeServiceStub(self.channel)
        self.endpoints = endpoint_pb2_grpc.EndpointServiceStub(self.channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)
        self.policies = policy_pb2_grpc.PolicyServiceStub(self.channel)
        self.identities = identity_pb2_grpc.IdentityServiceStub(self.channel)
        self.subscriptions = subscription_pb2_grpc.SubscriptionServiceStub(self.channel)


def register(name: str, ip: str) -> node_pb2.RegisterNodeRequest:
    return node_pb2.RegisterNodeRequest(name=name, underlay_ip=ip)


def endpoint(node: str, name: str) -> endpoint_pb2.CreateEndpointRequest:
    return endpoint_pb2.CreateEndpointRequest(node=node, name=name, labels=["k8s:app=x"])


POLICY = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p}
spec:
  endpointSelector: {matchLabels: {app: x}}
  ingress: [{fromEndpoints: [{matchLabels: {app: y}}]}]
"""


async def test_a_node_speaks_only_for_itself(cluster: TlsReplica) -> None:
    n1, n2 = As(cluster, "n1", certs.NODE), As(cluster, "n2", certs.NODE)
    await n1.nodes.Register(register("n1", "192.0.2.1"))
    await n2.nodes.Register(register("n2", "192.0.2.2"))
    await n1.endpoints.Create(endpoint("n1", "e1"))
    await n2.endpoints.Create(endpoint("n2", "e2"))
    before = await snapshot(cluster)

    attempts: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("NodeService/Register", lambda: n1.nodes.Register(register("n2", "192.0.2.9"))),
        ("NodeService/Register", lambda: n1.nodes.Register(register("n3", "192.0.2.3"))),
        ("NodeService/Heartbeat", lambda: n1.nodes.Heartbeat(node_pb2.HeartbeatRequest(
            name="n2"))),
        ("NodeService/Deregister", lambda: n1.nodes.Deregister(
            node_pb2.DeregisterNodeRequest(name="n2"))),
        ("EndpointService/Create", lambda: n1.endpoints.Create(endpoint("n2", "sneak"))),
        ("EndpointService/Delete", lambda: n1.endpoints.Delete(
            endpoint_pb2.DeleteEndpointRequest(namespace="default", name="e2"))),
        ("AdminService/ListEndpoints", lambda: n1.admin.ListEndpoints(
            admin_pb2.ListEndpointsRequest(node="n2"))),
        ("PolicyService/Apply", lambda: n1.policies.Apply(
            policy_pb2.ApplyPoliciesRequest(yaml=POLICY))),
        ("IdentityService/Allocate", lambda: n1.identities.Allocate(
            identity_pb2.AllocateIdentityRequest(labels=["k8s:app=z"]))),
    ]
    for method, attempt in attempts:
        message = await denied(attempt())
        assert "'n1'" in message and method in message, (method, message)
    assert await snapshot(cluster) == before  # nothing written

    # What it may do for itself still works.
    mine = await n1.admin.ListEndpoints(admin_pb2.ListEndpointsRequest(node="n1"))
    assert [e.name for e in mine.endpoints] == ["e1"]
    await n1.endpoints.Delete(endpoint_pb2.DeleteEndpointRequest(namespace="default", name="e1"))
    assert "e1" not in str(await snapshot(cluster))


async def subscribe(who: As, node: str) -> subscription_pb2.ServerMessage:
    async def requests() -> AsyncIterator[subscription_pb2.AgentMessage]:
        yield subscription_pb2.AgentMessage(hello=subscription_pb2.Hello(node=node))
        await asyncio.sleep(30)

    call = who.subscriptions.Subscribe(requests())
    try:
        message = await asyncio.wait_for(call.read(), 10)
        assert message is not grpc.aio.EOF
        return message
    finally:
        call.cancel()


async def test_a_node_subscribes_only_as_itself(cluster: TlsReplica) -> None:
    n1, n2 = As(cluster, "n1", certs.NODE), As(cluster, "n2", certs.NODE)
    await n1.nodes.Register(register("n1", "192.0.2.1"))
    await n2.nodes.Register(register("n2", "192.0.2.2"))
    message = await denied(subscribe(n1, "n2"))
    assert "'n1'" in message and "SubscriptionService/Subscribe" in message
    first = await subscribe(n1, "n1")
    assert first.WhichOneof("msg")


async def test_readers_read_and_write_nothing_and_roleless_certificates_are_refused(
        cluster: TlsReplica) -> None:
    reader = As(cluster, "auditor", certs.READER)
    await reader.admin.Status(admin_pb2.StatusRequest())
    message = await denied(reader.policies.Apply(policy_pb2.ApplyPoliciesRequest(yaml=POLICY)))
    assert "reader 'auditor' may not call bulkhead.v1.PolicyService/Apply" in message
    await denied(reader.nodes.Register(register("auditor", "192.0.2.7")))

    # Issued by the cluster's CA but without O=bulkhead:<role>: known, but nobody.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    from bulkhead import tls

    key = certs.new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nobody")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(cluster.ca.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(certs.now() - certs.CLOCK_SKEW)
            .not_valid_after(certs.now() + certs.CLOCK_SKEW)
            .sign(cluster.ca.key, hashes.SHA256()))
    channel = cluster.channel(tls.Pem(cluster.tls.ca_pem, certs.cert_pem(cert),
                                      certs.key_pem(key)))
    message = await denied(admin_pb2_grpc.AdminServiceStub(channel).Status(
        admin_pb2.StatusRequest()), grpc.StatusCode.UNAUTHENTICATED)
    assert "carries no Bulkhead role" in message


async def test_a_method_missing_from_the_table_is_refused_to_everyone(
        cluster: TlsReplica) -> None:
    admin = cluster.channel(cluster.admin())
    status = admin_pb2_grpc.AdminServiceStub(admin).Status
    await status(admin_pb2.StatusRequest())
    # The table is read on every call (not copied at registration).
    method = "bulkhead.v1.AdminService/ListNodes"
    rule = TABLE.pop(method)
    try:
        message = await denied(admin_pb2_grpc.AdminServiceStub(admin).ListNodes(
            admin_pb2.ListNodesRequest()))
        assert "not in the authorization table" in message
    finally:
        TABLE[method] = rule
