"""Nodes, their leases, endpoints and the ipcache against a real etcd."""

from __future__ import annotations

import grpc
import pytest

from bulkhead.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    endpoint_pb2,
    endpoint_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
)
from controlplane.store.keys import Keys
from tests.conftest import ReplicaFactory, eventually


def stubs(channel: grpc.aio.Channel):  # type: ignore[no-untyped-def]
    return (node_pb2_grpc.NodeServiceStub(channel), endpoint_pb2_grpc.EndpointServiceStub(channel),
            admin_pb2_grpc.AdminServiceStub(channel))


async def test_register_gives_id_cidr_and_tunnel(replicas: ReplicaFactory) -> None:
    nodes, _, _ = stubs((await replicas()).channel())
    n1 = await nodes.Register(node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    n2 = await nodes.Register(node_pb2.RegisterNodeRequest(name="n2", underlay_ip="192.0.2.2"))
    assert n1.node_id != n2.node_id
    assert n1.pod_cidr != n2.pod_cidr and n1.pod_cidr.endswith("/24")
    assert (n1.tunnel.ip, n1.tunnel.port) == ("192.0.2.1", 8472)
    again = await nodes.Register(node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    assert (again.node_id, again.pod_cidr) == (n1.node_id, n1.pod_cidr)


async def test_endpoint_create_is_idempotent_and_delete_releases(
        replicas: ReplicaFactory) -> None:
    replica = await replicas()
    nodes, endpoints, admin = stubs(replica.channel())
    node = await nodes.Register(node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    request = endpoint_pb2.CreateEndpointRequest(
        node="n1", namespace="default", name="deathstar-1",
        labels=["k8s:org=empire", "k8s:class=deathstar"])
    first = await endpoints.Create(request)
    retried = await endpoints.Create(request)
    assert first == retried
    assert first.identity >= 256
    assert first.ip.startswith(node.pod_cidr.rsplit(".", 1)[0])
    await replica.cp.cache.wait_for((await replica.cp.etcd.status()).revision)
    entries = (await admin.ListIPCache(admin_pb2.ListIPCacheRequest())).entries
    assert [(e.prefix, e.identity, e.node, e.tunnel.ip) for e in entries] == [
        (f"{first.ip}/32", first.identity, "n1", "192.0.2.1")]
    ident = await identity_pb2_grpc.IdentityServiceStub(replica.channel()).Get(
        identity_pb2.GetIdentityRequest(id=first.identity))
    assert ident.references == 1, "a retried create must not count twice"

    conflicting = endpoint_pb2.CreateEndpointRequest(
        node="n1", namespace="default", name="deathstar-1", labels=["k8s:org=alliance"])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await endpoints.Create(conflicting)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS

    await endpoints.Delete(endpoint_pb2.DeleteEndpointRequest(namespace="default",
                                                              name="deathstar-1"))
    keys = Keys(replica.cp.config.cluster_name)
    for prefix in (keys.endpoints, keys.ipcache, keys.identity_refs_prefix):
        kvs, _, _ = await replica.cp.etcd.range(prefix)
        assert kvs == [], f"{prefix} not cleaned"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await endpoints.Delete(endpoint_pb2.DeleteEndpointRequest(namespace="default",
                                                                  name="deathstar-1"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_requested_ip_must_be_free_and_inside_the_node_cidr(
        replicas: ReplicaFactory) -> None:
    nodes, endpoints, _ = stubs((await replicas()).channel())
    node = await nodes.Register(node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    base = node.pod_cidr.rsplit(".", 1)[0]
    made = await endpoints.Create(endpoint_pb2.CreateEndpointRequest(
        node="n1", name="a", labels=["k8s:app=a"], ip=f"{base}.10"))
    assert made.ip == f"{base}.10"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await endpoints.Create(endpoint_pb2.CreateEndpointRequest(
            node="n1", name="b", labels=["k8s:app=b"], ip=f"{base}.10"))
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    for bad in ("192.0.2.50", f"{base}.1", f"{base}.0"):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await endpoints.Create(endpoint_pb2.CreateEndpointRequest(
                node="n1", name="c", labels=["k8s:app=c"], ip=bad))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_lease_expiry_removes_node_endpoints_and_ipcache_and_cidr_is_kept(
        replicas: ReplicaFactory) -> None:
    replica = await replicas(node_ttl=2)
    nodes, endpoints, _ = stubs(replica.channel())
    node = await nodes.Register(node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    for i in range(3):
        await endpoints.Create(endpoint_pb2.CreateEndpointRequest(
            node="n1", name=f"pod{i}", labels=[f"k8s:app=p{i}"]))
    keys = Keys(replica.cp.config.cluster_name)

    async def gone() -> bool:
        counts = []
        for prefix in (keys.nodes, keys.endpoints, keys.ipcache, keys.identity_refs_prefix):
            kvs, _, _ = await replica.cp.etcd.range(prefix)
            counts.append(len(kvs))
        return counts == [0, 0, 0, 0]

    assert await eventually(gone, timeout=15), "node lease expiry left state behind"
    back = await nodes.Register(node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    assert (back.node_id, back.pod_cidr) == (node.node_id, node.pod_cidr)


async def test_heartbeat_keeps_node_alive_and_reports_expiry(replicas: ReplicaFactory) -> None:
    replica = await replicas(node_ttl=2)
    nodes, _, _ = stubs(replica.channel())
    await nodes.Register(node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    response = await nodes.Heartbeat(node_pb2.HeartbeatRequest(name="n1"))
    assert response.ttl_seconds > 0
    await nodes.Deregister(node_pb2.DeregisterNodeRequest(name="n1"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await nodes.Heartbeat(node_pb2.HeartbeatRequest(name="n1"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    # A node whose heartbeats stop is gone once its 2 s TTL passes (polled in etcd: a
    # Heartbeat would renew the lease), and its next heartbeat is told to register again.
    await nodes.Register(node_pb2.RegisterNodeRequest(name="n2", underlay_ip="192.0.2.2"))
    assert (await nodes.Heartbeat(node_pb2.HeartbeatRequest(name="n2"))).ttl_seconds > 0
    key = Keys(replica.cp.config.cluster_name).node("n2")

    async def expired() -> bool:
        return await replica.cp.etcd.get(key) is None

    assert await eventually(expired, timeout=15), "n2 outlived its lease without heartbeats"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await nodes.Heartbeat(node_pb2.HeartbeatRequest(name="n2"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "register" in (err.value.details() or ""), err.value.details()


async def test_list_views_filter_and_paginate(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    nodes, endpoints, admin = stubs(replica.channel())
    for n in ("n1", "n2"):
        await nodes.Register(node_pb2.RegisterNodeRequest(name=n, underlay_ip="192.0.2.9"))
    for i in range(7):
        await endpoints.Create(endpoint_pb2.CreateEndpointRequest(
            node="n1" if i < 5 else "n2", name=f"p{i}", labels=["k8s:app=same"]))
    await replica.cp.cache.wait_for((await replica.cp.etcd.status()).revision)
    seen: list[str] = []
    request = admin_pb2.ListEndpointsRequest(node="n1", page_size=2)
    while True:
        page = await admin.ListEndpoints(request)
        assert len(page.endpoints) <= 2
        seen += [e.name for e in page.endpoints]
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert seen == ["p0", "p1", "p2", "p3", "p4"]
    listed = await admin.ListIdentities(admin_pb2.ListIdentitiesRequest(
        label_selector=["k8s:app=same"]))
    assert [i.references for i in listed.identities] == [7]
