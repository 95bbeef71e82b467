"""A Service applied to the control plane reaches every agent and is load-balanced in its
datapath: the whole path, `ServiceService.Apply` → subscription → maps → a pod's connection."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

import grpc
import pytest

from bulkhead.v1 import (
    agent_pb2,
    endpoint_pb2,
    endpoint_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    service_pb2,
    service_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
)
from tests.agent.cluster import DATAPATH_TESTS, Cluster, Pod, probe

pytestmark = pytest.mark.datapath

WAIT = 30.0   # an upper bound for waits, never a latency assertion

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 8080, targetPort: 80}]
"""


def names(pod: Pod, ip: str, port: int, count: int) -> dict[str, int]:
    """`count` new TCP connections from `pod`: how many each server name answered."""
    out = subprocess.run(
        ["ip", "netns", "exec", pod.ns, sys.executable, str(DATAPATH_TESTS / "netmany.py"), ip,
         str(port), str(count), "2"], capture_output=True, text=True, timeout=count * 3 + 10)
    assert out.returncode == 0, out.stderr
    result: dict[str, int] = json.loads(out.stdout)
    return result


def test_a_service_applied_to_the_control_plane_is_load_balanced(lab: Cluster) -> None:
    web1 = lab.add_pod("web-1", "n1", ["k8s:app=web"], serve=True)
    lab.add_pod("web-2", "n2", ["k8s:app=web"], serve=True)
    client = lab.add_pod("client", "n1", ["k8s:app=client"])
    with grpc.insecure_channel(lab.cp_address) as channel:
        applied = service_pb2_grpc.ServiceServiceStub(channel).Apply(
            service_pb2.ApplyServicesRequest(yaml=SERVICE), timeout=30)
        service = applied.services[0].service
        assert sorted(b.endpoint for b in service.backends) == ["default/web-1",
                                                                 "default/web-2"]
        vip = service.cluster_ip
        deadline = time.monotonic() + WAIT
        while probe(client, "tcp", vip, 8080) != "ok":
            assert time.monotonic() < deadline, "the ClusterIP never answered"
            time.sleep(0.2)
        # New connections are spread over both backends, on this node and across the tunnel.
        assert set(names(client, vip, 8080, 40)) == {"web-1", "web-2"}

        # A backend whose endpoint is deleted gets no new connections.
        endpoint_pb2_grpc.EndpointServiceStub(channel).Delete(
            endpoint_pb2.DeleteEndpointRequest(namespace="default", name="web-2"), timeout=10)
        deadline = time.monotonic() + WAIT
        while set(got := names(client, vip, 8080, 10)) != {"web-1"}:
            assert time.monotonic() < deadline, f"still reaching a deleted backend: {got}"
            time.sleep(0.2)
        assert probe(client, "tcp", web1.ip, 80) == "ok"


NAMED = """
apiVersion: v1
kind: Service
metadata: {name: named}
spec:
  selector: {app: named}
  ports: [{port: 8081, targetPort: web}]
"""


def lb_backends(lab: Cluster, short: str, frontend: str) -> set[str]:
    rows = lab.agent(short).DumpMap(agent_pb2.DumpMapRequest(map="lb"), timeout=10).rows
    return {r.fields["BACKEND ADDRESS (REVNAT_ID) (SLOT)"].split(" ")[0] for r in rows
            if r.fields["SERVICE ADDRESS"] == frontend} - {"0.0.0.0:0"}


def test_a_named_target_port_resolves_per_backend(lab: Cluster) -> None:
    """Pods name their container port "web" on different numbers; each connection to the
    ClusterIP goes to its backend's own number; a selected pod without the port is none."""
    one = lab.add_pod("named-1", "n1", ["k8s:app=named"], serve=True, ports=[("web", 80, "TCP")])
    two = lab.add_pod("named-2", "n2", ["k8s:app=named"], serve=True,
                      ports=[("web", 81, "TCP"), ("dns", 5353, "UDP")])
    none = lab.add_pod("named-3", "n1", ["k8s:app=named"], serve=True)
    listed = lab.agent("n2").ListEndpoints(agent_pb2.ListAgentEndpointsRequest(), timeout=10)
    assert [(p.name, p.port, p.protocol) for e in listed.endpoints if e.name == "named-2"
            for p in e.ports] == [("web", 81, "TCP"), ("dns", 5353, "UDP")]
    client = lab.add_pod("named-client", "n1", ["k8s:app=named-client"])
    with grpc.insecure_channel(lab.cp_address) as channel:
        applied = service_pb2_grpc.ServiceServiceStub(channel).Apply(
            service_pb2.ApplyServicesRequest(yaml=NAMED), timeout=30)
    service = applied.services[0].service
    assert sorted((b.endpoint, b.port) for b in service.backends) == [("default/named-1", 80),
                                                                      ("default/named-2", 81)]
    vip = service.cluster_ip
    expected = {f"{one.ip}:80", f"{two.ip}:81"}
    deadline = time.monotonic() + WAIT
    while any(lb_backends(lab, n, f"{vip}:8081/TCP") != expected for n in ("n1", "n2")):
        assert time.monotonic() < deadline, "the backends never reached every node's map"
        time.sleep(0.2)
    assert set(names(client, vip, 8081, 40)) == {"named-1", "named-2"}
    assert none.ip not in str(lb_backends(lab, "n1", f"{vip}:8081/TCP"))


TO_SERVICES_SVC = """
apiVersion: v1
kind: Service
metadata: {name: ts-db}
spec:
  selector: {app: ts-db}
  ports: [{port: 8082, targetPort: 80}]
"""
TO_SERVICES = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ts-client-egress}
spec:
  endpointSelector: {matchLabels: {app: ts-client}}
  egress:
  - toServices: [{k8sService: {serviceName: ts-db, namespace: default}}]
"""


def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_to_services_allows_egress_to_the_backends_only(lab: Cluster) -> None:
    """A toServices egress policy: the client reaches the service (through its ClusterIP and
    at its backends' addresses), not another pod; a backend added later is allowed too."""
    db1 = lab.add_pod("ts-db-1", "n2", ["k8s:app=ts-db"], serve=True)
    other = lab.add_pod("ts-other", "n2", ["k8s:app=ts-other"], serve=True)
    client = lab.add_pod("ts-client", "n1", ["k8s:app=ts-client"])
    with grpc.insecure_channel(lab.cp_address) as channel:
        applied = service_pb2_grpc.ServiceServiceStub(channel).Apply(
            service_pb2.ApplyServicesRequest(yaml=TO_SERVICES_SVC), timeout=30)
        vip = applied.services[0].service.cluster_ip
        policy = policy_pb2_grpc.PolicyServiceStub(channel).Apply(
            policy_pb2.ApplyPoliciesRequest(yaml=TO_SERVICES), timeout=30)
        assert list(policy.affected_identities) == [client.identity]
        waited = subscription_pb2_grpc.SubscriptionAdminServiceStub(channel).WaitForRevision(
            subscription_pb2.WaitForRevisionRequest(revision=policy.revision,
                                                    timeout_seconds=20), timeout=30)
        assert waited.converged, waited
        until(lambda: probe(client, "tcp", vip, 8082) == "ok", "the service never answered")
        assert probe(client, "tcp", db1.ip, 80) == "ok"
        assert probe(client, "tcp", other.ip, 80, timeout=0.5) == "timeout"
        # A new backend (another identity) is a peer as soon as it exists.
        db2 = lab.add_pod("ts-db-2", "n1", ["k8s:app=ts-db", "k8s:rev=2"], serve=True)
        until(lambda: probe(client, "tcp", db2.ip, 80) == "ok", "the new backend stayed denied")
        # Its service deleted, the policy allows nothing: the backend is denied.
        service_pb2_grpc.ServiceServiceStub(channel).Delete(service_pb2.DeleteServiceRequest(
            service=service_pb2.ServiceRef(namespace="default", name="ts-db")), timeout=10)
        until(lambda: probe(client, "tcp", db1.ip, 80, timeout=0.5) == "timeout",
              "the backend stayed allowed without its service")
        policy_pb2_grpc.PolicyServiceStub(channel).Delete(policy_pb2.DeletePolicyRequest(
            policy=policy_pb2.PolicyRef(kind="CiliumNetworkPolicy", namespace="default",
                                        name="ts-client-egress")), timeout=10)
