"""ServiceService against a real etcd and in-process replicas: apply (all or nothing,
unchanged writes nothing, in-place updates keep the ClusterIP), ClusterIP and frontend-id
claims without locks, delete freeing both, and backends derived from endpoints as a
subscribed agent receives them."""

from __future__ import annotations

import asyncio
import ipaddress
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from bulkhead.rpcerror import field_violations
from bulkhead.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    endpoint_pb2,
    endpoint_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    service_pb2,
    service_pb2_grpc,
    types_pb2,
)
from controlplane import metrics
from controlplane.records.codec import Node
from controlplane.server import metrics_sources
from controlplane.store.embedded import free_port
from controlplane.store.etcd import Etcd
from controlplane.store.keys import Keys
from nodeagent.subscription.client import SubscriptionClient
from tests.conftest import Replica, ReplicaFactory, eventually
from tests.test_service_parse import DEMO

pytestmark = pytest.mark.timeout(90)

NS = "k8s:io.kubernetes.pod.namespace=default"
WEB = """\
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: web}}
  ports:
  - {{name: http, port: 80, targetPort: 8080}}
"""


def stub(replica: Replica) -> service_pb2_grpc.ServiceServiceStub:
    return service_pb2_grpc.ServiceServiceStub(replica.channel())


def ref(namespace: str, name: str) -> service_pb2.ServiceRef:
    return service_pb2.ServiceRef(namespace=namespace, name=name)


async def apply(replica: Replica, text: str) -> service_pb2.ApplyServicesResponse:
    return await stub(replica).Apply(service_pb2.ApplyServicesRequest(yaml=text))


async def listed(replica: Replica) -> dict[str, types_pb2.Service]:
    found = await stub(replica).List(service_pb2.ListServicesRequest())
    return {f"{s.namespace}/{s.name}": s for s in found.services}


async def etcd_keys(replica: Replica, prefix: str) -> dict[str, bytes]:
    etcd = Etcd(replica.cp.config.etcd_endpoints)
    try:
        kvs, _, _ = await etcd.range(prefix)
        return {kv.key[len(prefix):]: kv.value for kv in kvs}
    finally:
        await etcd.close()


async def test_apply_the_demo_file_then_unchanged_then_update_in_place(
        replicas: ReplicaFactory) -> None:
    replica = await replicas()
    keys: Keys = replica.cp.keys
    first = await apply(replica, DEMO)
    [applied] = first.services
    assert applied.action == "created"
    assert list(first.notes) == [
        "documents[1]: Deployment deathstar (apps/v1) skipped: not a Service",
        "documents[2]: Pod tiefighter (v1) skipped: not a Service",
        "documents[3]: Pod xwing (v1) skipped: not a Service"]
    svc = applied.service
    ip = ipaddress.IPv4Address(svc.cluster_ip)
    assert ip in ipaddress.IPv4Network("10.96.0.0/12")
    assert ip not in (ipaddress.IPv4Address("10.96.0.0"), ipaddress.IPv4Address("10.96.0.1"))
    assert svc.id == 1 and not svc.headless
    assert dict(svc.selector) == {"org": "empire", "class": "deathstar"}
    assert [(p.port, p.protocol, p.target_port) for p in svc.ports] == [(80, "TCP", 80)]
    assert await etcd_keys(replica, keys.service_ips) == {svc.cluster_ip: b"default/deathstar"}
    assert await etcd_keys(replica, keys.service_ids) == {"1": b"default/deathstar"}

    again = await apply(replica, DEMO)
    assert [a.action for a in again.services] == ["unchanged"]
    assert again.revision == first.revision          # nothing written

    changed = DEMO.replace("  - port: 80\n", "  - port: 80\n    targetPort: 8080\n")
    updated = await apply(replica, changed)
    [u] = updated.services
    assert u.action == "configured" and updated.revision > first.revision
    assert (u.service.cluster_ip, u.service.id) == (svc.cluster_ip, 1)
    assert u.service.ports[0].target_port == 8080
    got = await stub(replica).Get(service_pb2.GetServiceRequest(service=ref("default",
                                                                            "deathstar")))
    assert got.cluster_ip == svc.cluster_ip and got.ports[0].target_port == 8080


async def test_requested_cluster_ips(replicas: ReplicaFactory) -> None:
    replica = await replicas(service_cidr="10.100.0.0/24")
    one = WEB.format(name="one").replace("spec:\n", "spec:\n  clusterIP: 10.100.0.50\n")
    made = await apply(replica, one)
    assert made.services[0].service.cluster_ip == "10.100.0.50"
    # The same address for a second service: refused, naming the field; nothing stored.
    two = WEB.format(name="two").replace("spec:\n", "spec:\n  clusterIP: 10.100.0.50\n")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await apply(replica, WEB.format(name="three") + "---\n" + two)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert [(v.field, v.description) for v in field_violations(err.value)] == [
        ("documents[1].spec.clusterIP", "10.100.0.50 is taken by service default/one")]
    assert set(await listed(replica)) == {"default/one"}
    # Outside the range (and the reserved first address): INVALID_ARGUMENT on spec.clusterIP.
    for address in ("10.96.0.10", "10.100.0.1", "10.100.0.255"):
        bad = WEB.format(name="four").replace("spec:\n", f"spec:\n  clusterIP: {address}\n")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await apply(replica, bad)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        [violation] = field_violations(err.value)
        assert violation.field == "spec.clusterIP"
        assert "is not in the service CIDR 10.100.0.0/24" in violation.description
    # An update may not move the address.
    moved = one.replace("10.100.0.50", "10.100.0.51")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await apply(replica, moved)
    assert [(v.field, v.description) for v in field_violations(err.value)] == [
        ("spec.clusterIP", "is immutable: default/one holds 10.100.0.50")]


async def test_bad_documents_store_nothing(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    text = (WEB.format(name="good") + "---\n" +
            WEB.format(name="bad").replace("spec:\n", "spec:\n  type: NodePort\n"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await apply(replica, text)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [(v.field, v.description) for v in field_violations(err.value)] == [
        ("documents[1].spec.type", "NodePort services are not supported (ClusterIP only)")]
    assert await listed(replica) == {}
    assert await etcd_keys(replica, replica.cp.keys.prefix + "ipam/service") == {}


async def test_delete_frees_the_address_and_the_id(replicas: ReplicaFactory) -> None:
    replica = await replicas(service_cidr="10.100.0.0/29")   # 5 usable addresses
    keys = replica.cp.keys
    made = await apply(replica, "---\n".join(WEB.format(name=f"s{i}") for i in range(5)))
    assert sorted(a.service.id for a in made.services) == [1, 2, 3, 4, 5]
    assert len({a.service.cluster_ip for a in made.services}) == 5
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await apply(replica, WEB.format(name="s5"))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    s2 = next(a.service for a in made.services if a.service.name == "s2")
    await stub(replica).Delete(service_pb2.DeleteServiceRequest(service=ref("default", "s2")))
    assert s2.cluster_ip not in await etcd_keys(replica, keys.service_ips)
    assert str(s2.id) not in await etcd_keys(replica, keys.service_ids)
    # Both are free again: the next service gets the freed id and the one free address.
    [again] = (await apply(replica, WEB.format(name="s5"))).services
    assert (again.service.id, again.service.cluster_ip) == (s2.id, s2.cluster_ip)
    for call in (stub(replica).Delete(service_pb2.DeleteServiceRequest(
                     service=ref("default", "s2"))),
                 stub(replica).Get(service_pb2.GetServiceRequest(service=ref("default",
                                                                             "s2")))):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_two_replicas_never_hand_out_one_address_or_id(replicas: ReplicaFactory) -> None:
    a, b = await replicas(service_cidr="10.100.0.0/26"), await replicas(
        service_cidr="10.100.0.0/26")
    texts = [WEB.format(name=f"s{i}") for i in range(40)]
    results = await asyncio.gather(*(apply(a if i % 2 else b, t) for i, t in enumerate(texts)))
    services = [r.services[0].service for r in results]
    assert len({s.cluster_ip for s in services}) == 40
    assert sorted(s.id for s in services) == list(range(1, 41))
    assert len(await etcd_keys(a, a.cp.keys.service_ips)) == 40


async def make_endpoint(replica: Replica, node: str, name: str, labels: list[str],
                        namespace: str = "default") -> str:
    made = await endpoint_pb2_grpc.EndpointServiceStub(replica.channel()).Create(
        endpoint_pb2.CreateEndpointRequest(name=name, node=node, labels=labels,
                                           namespace=namespace))
    return str(made.ip)


async def test_every_agent_receives_services_with_their_backends(
        replicas: ReplicaFactory) -> None:
    replica = await replicas()
    nodes = node_pb2_grpc.NodeServiceStub(replica.channel())
    await nodes.Register(node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    await nodes.Register(node_pb2.RegisterNodeRequest(name="n2", underlay_ip="192.0.2.2"))
    ds1 = await make_endpoint(replica, "n1", "deathstar-1",
                              ["k8s:org=empire", "k8s:class=deathstar", NS])
    await make_endpoint(replica, "n1", "tiefighter", ["k8s:org=empire", "k8s:class=tiefighter",
                                                      NS])
    await apply(replica, DEMO)
    # n3 hosts nothing the service selects; it receives the service all the same.
    await nodes.Register(node_pb2.RegisterNodeRequest(name="n3", underlay_ip="192.0.2.3"))
    clients = [SubscriptionClient(n, [replica.address], underlay_ip=ip, register=False,
                                  backoff=(0.1, 1.0))
               for n, ip in (("n2", "192.0.2.2"), ("n3", "192.0.2.3"))]
    tasks = [asyncio.create_task(c.run()) for c in clients]

    def backends(client: SubscriptionClient) -> set[tuple[str, int, str]] | None:
        svc = client.state.services.get("default/deathstar")
        return None if svc is None else {(b.ip, b.port, b.node) for b in svc.backends}

    async def everywhere(expected: set[tuple[str, int, str]] | None) -> bool:
        return all(backends(c) == expected for c in clients)

    try:
        for client in clients:
            await asyncio.wait_for(client.synced.wait(), 20)
        # From the snapshot: the one matching endpoint; the tiefighter is not selected.
        assert await everywhere({(ds1, 80, "n1")})
        svc = clients[0].state.services["default/deathstar"]
        assert svc.cluster_ip and svc.id == 1 and svc.backends[0].endpoint == \
            "default/deathstar-1"
        # A new matching endpoint on another node (a delta) is a new backend.
        ds2 = await make_endpoint(replica, "n2", "deathstar-2",
                                  ["k8s:org=empire", "k8s:class=deathstar", NS])
        assert await eventually(lambda: everywhere({(ds1, 80, "n1"), (ds2, 80, "n2")}))
        # An endpoint in another namespace with the same labels is not.
        await make_endpoint(replica, "n2", "other", ["k8s:org=empire", "k8s:class=deathstar",
                                                    "k8s:io.kubernetes.pod.namespace=other"],
                            namespace="other")
        # Deleting one removes it.
        await endpoint_pb2_grpc.EndpointServiceStub(replica.channel()).Delete(
            endpoint_pb2.DeleteEndpointRequest(name="deathstar-2"))
        assert await eventually(lambda: everywhere({(ds1, 80, "n1")}))
        # n1 is lost: its lease ends (as when it expires), its endpoints and backends with it.
        etcd = Etcd(replica.cp.config.etcd_endpoints)
        try:
            node = await etcd.get(replica.cp.keys.node("n1"))
            assert node is not None
            await etcd.revoke(Node.decode(node.value).lease)
        finally:
            await etcd.close()
        assert await eventually(lambda: everywhere(set()))
        status = await admin_pb2_grpc.AdminServiceStub(replica.channel()).Status(
            admin_pb2.StatusRequest())
        assert status.counts["services"] == 1 and status.counts["service_backends"] == 0
        # The service deleted: gone from every agent.
        await stub(replica).Delete(service_pb2.DeleteServiceRequest(
            service=ref("default", "deathstar")))
        assert await eventually(lambda: everywhere(None))
    finally:
        for task in tasks:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_served_with_health_reflection_and_metrics(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    await apply(replica, WEB.format(name="web"))
    health = health_pb2_grpc.HealthStub(replica.channel())
    answer = await health.Check(health_pb2.HealthCheckRequest(
        service="bulkhead.v1.ServiceService"))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(replica.channel())
    call = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")]))
    names = [s.name async for r in call for s in r.list_services_response.service]
    assert "bulkhead.v1.ServiceService" in names
    port = free_port()
    server = metrics.serve(metrics_sources(replica.cp), f"127.0.0.1:{port}")
    try:
        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return str(r.read().decode())

        text = await asyncio.to_thread(scrape)
        assert 'bulkhead_objects{kind="services"} 1.0' in text
        assert 'bulkhead_objects{kind="service_backends"} 0.0' in text
    finally:
        server.shutdown()


async def test_a_replica_started_later_serves_services_from_its_first_list(
        replicas: ReplicaFactory) -> None:
    """A replica's first list (and any relist) builds every service with its backends; a
    selector-less service and a named targetPort have none (nothing to resolve them with)."""
    a = await replicas()
    await node_pb2_grpc.NodeServiceStub(a.channel()).Register(
        node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    ip = await make_endpoint(a, "n1", "web-1", ["k8s:app=web", NS])
    named = WEB.format(name="named").replace("targetPort: 8080", "targetPort: http-alt")
    bare = "apiVersion: v1\nkind: Service\nmetadata: {name: bare}\nspec:\n  ports: [{port: 1}]\n"
    await apply(a, WEB.format(name="web") + "---\n" + named + "---\n" + bare)
    b = await replicas()
    found = await listed(b)
    assert [(x.ip, x.port, x.endpoint) for x in found["default/web"].backends] == [
        (ip, 8080, "default/web-1")]
    assert found["default/named"].ports[0].target_port_name == "http-alt"
    assert list(found["default/named"].backends) == []
    assert list(found["default/bare"].backends) == []
    client = SubscriptionClient("n1", [b.address], underlay_ip="192.0.2.1", register=False,
                                backoff=(0.1, 1.0))
    task = asyncio.create_task(client.run())
    try:
        await asyncio.wait_for(client.synced.wait(), 20)
        assert set(client.state.services) == {"default/web", "default/named", "default/bare"}
        assert client.state.services["default/web"] == found["default/web"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_claim_left_under_the_same_name_is_taken_over(replicas: ReplicaFactory) -> None:
    """A ClusterIP claim without its service (the service deleted around the API) names the
    service: applying it again with that address takes the claim over instead of failing."""
    replica = await replicas(service_cidr="10.100.0.0/24")
    keys = replica.cp.keys
    revision = await replica.cp.etcd.put(keys.service_ip("10.100.0.7"), b"default/web")
    await replica.cp.cache.wait_for(revision)
    text = WEB.format(name="web").replace("spec:\n", "spec:\n  clusterIP: 10.100.0.7\n")
    [made] = (await apply(replica, text)).services
    assert (made.action, made.service.cluster_ip) == ("created", "10.100.0.7")
    other = WEB.format(name="other").replace("spec:\n", "spec:\n  clusterIP: 10.100.0.7\n")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await apply(replica, other)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
