"""A Service's named targetPort resolves per backend to the endpoint's container port of that
name and protocol (endpoints carry their pod's `ports[]`); an endpoint without it is no backend
of that service port, as in Kubernetes. Through the API against a real etcd."""

from __future__ import annotations

import grpc
import pytest

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
from controlplane.records.codec import Endpoint, EndpointPort
from integration.lab.lab import LabError
from integration.lab.manifests import parse_manifest
from tests.conftest import Replica, ReplicaFactory

pytestmark = pytest.mark.timeout(90)

NS = "k8s:io.kubernetes.pod.namespace=default"
SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 8080, targetPort: http}
  - {name: metrics, port: 9090, targetPort: 9100}
  - {name: dns, port: 53, protocol: UDP, targetPort: dns}
"""
POD = """\
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers:
  - name: c
    image: busybox
    ports:
    - {name: http, containerPort: 8000}
    - {name: dns, containerPort: 5353, protocol: UDP}
    - {containerPort: 9100}
"""


def port(name: str, number: int, protocol: str = "") -> types_pb2.EndpointPort:
    return types_pb2.EndpointPort(name=name, port=number, protocol=protocol)


async def create(replica: Replica, name: str, ports: list[types_pb2.EndpointPort],
                 app: str = "web") -> types_pb2.Endpoint:
    return await endpoint_pb2_grpc.EndpointServiceStub(replica.channel()).Create(
        endpoint_pb2.CreateEndpointRequest(node="n1", namespace="default", name=name,
                                           labels=[f"k8s:app={app}", NS], ports=ports))


def test_endpoint_records_keep_their_ports() -> None:
    ep = Endpoint("default", "a", "n1", ("k8s:a=b",), "10.0.1.2", 300,
                  (EndpointPort("http", 8000, "TCP"), EndpointPort("", 53, "UDP")))
    assert Endpoint.decode(ep.encode()) == ep
    assert ep.port_named("http", "TCP") == 8000 and ep.port_named("http", "UDP") == 0
    old = (b'{"identity": 300, "ip": "10.0.1.2", "labels": ["k8s:a=b"], "name": "a", '
           b'"namespace": "default", "node": "n1"}')
    assert Endpoint.decode(old).ports == ()


def test_lab_pods_carry_their_container_ports() -> None:
    [pod] = parse_manifest(POD).workloads
    assert pod.container_ports == [("http", 8000, "TCP"), ("dns", 5353, "UDP"), ("", 9100, "TCP")]
    assert pod.ports == ["8000", "5353", "9100"]
    with pytest.raises(LabError) as err:
        parse_manifest(POD.replace("name: http", "name: HTTP").replace("protocol: UDP",
                                                                      "protocol: SCTP"))
    assert "spec.containers[0].ports[0].name: 'HTTP' is not a port name" in str(err.value)
    assert "spec.containers[0].ports[1].protocol: must be TCP or UDP" in str(err.value)


async def test_named_target_ports_resolve_per_backend(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    await node_pb2_grpc.NodeServiceStub(replica.channel()).Register(
        node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    a = await create(replica, "web-a", [port("http", 8000), port("dns", 5353, "UDP")])
    assert [(p.name, p.port, p.protocol) for p in a.ports] == [("http", 8000, "TCP"),
                                                               ("dns", 5353, "UDP")]
    b = await create(replica, "web-b", [port("http", 8001, "TCP"), port("dns", 53, "TCP")])
    c = await create(replica, "web-c", [])
    # A retried create with the same ports is the same endpoint; other ports are a conflict.
    assert await create(replica, "web-a", [port("http", 8000, "TCP"), port("dns", 5353, "UDP")])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await create(replica, "web-a", [port("http", 8002)])
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS

    services = service_pb2_grpc.ServiceServiceStub(replica.channel())
    [applied] = (await services.Apply(service_pb2.ApplyServicesRequest(yaml=SERVICE))).services
    got = {(x.port_name, x.endpoint): (x.ip, x.port, x.protocol)
           for x in applied.service.backends}
    assert got == {
        ("http", "default/web-a"): (a.ip, 8000, "TCP"),
        ("http", "default/web-b"): (b.ip, 8001, "TCP"),
        # A number is every selected endpoint's port.
        ("metrics", "default/web-a"): (a.ip, 9100, "TCP"),
        ("metrics", "default/web-b"): (b.ip, 9100, "TCP"),
        ("metrics", "default/web-c"): (c.ip, 9100, "TCP"),
        # web-b's "dns" is TCP: no backend of the UDP port; web-c names no port at all.
        ("dns", "default/web-a"): (a.ip, 5353, "UDP")}
    status = await admin_pb2_grpc.AdminServiceStub(replica.channel()).Status(
        admin_pb2.StatusRequest())
    assert status.counts["service_backends"] == 6


async def test_bad_ports_are_refused_by_field(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    await node_pb2_grpc.NodeServiceStub(replica.channel()).Register(
        node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await create(replica, "bad", [port("http", 80), port("http", 81), port("x", 0),
                                      port("Bad_Name", 82), port("", 80, "TCP"),
                                      port("sctp", 83, "SCTP")])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [(v.field, v.description.split(" ")[0]) for v in field_violations(err.value)] == [
        ("ports[1].name", "'http'"), ("ports[2].port", "must"), ("ports[3].name", "'Bad_Name'"),
        ("ports[4].port", "80/TCP"), ("ports[5].protocol", "must")]
    listed = await admin_pb2_grpc.AdminServiceStub(replica.channel()).ListEndpoints(
        admin_pb2.ListEndpointsRequest())
    assert list(listed.endpoints) == []
