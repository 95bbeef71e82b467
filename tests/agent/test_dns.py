"""Cluster DNS from pods: each agent answers its node's pods at 169.254.1.1 from the services
it received, and the pods' resolv.conf (the Kubernetes search path) makes `NAME`, `NAME.NS`
and `NAME.NS.svc.cluster.local` all resolve to the ClusterIP."""

from __future__ import annotations

import subprocess
import sys
import time

import grpc
import pytest

from bulkhead.v1 import (
    policy_pb2,
    policy_pb2_grpc,
    service_pb2,
    service_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
)
from tests.agent.cluster import Cluster, Pod

pytestmark = pytest.mark.datapath

WAIT = 30.0   # an upper bound for waits, never a latency assertion

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web-hl}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
"""

QUERY = """
import sys, dns.exception, dns.message, dns.query, dns.rcode
q = dns.message.make_query(sys.argv[1], "A")
send = dns.query.tcp if sys.argv[2] == "tcp" else dns.query.udp
try:
    r = send(q, "169.254.1.1", timeout=3)
except dns.exception.Timeout:
    sys.exit(print("TIMEOUT"))
print(dns.rcode.to_text(r.rcode()), *sorted(a.address for rr in r.answer for a in rr))
"""

LOCKED = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: locked}
spec:
  endpointSelector: {matchLabels: {app: locked}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
  egress:
  - toEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
"""
DNS_RULE = """
  - toEntities: [host]
    toPorts: [{ports: [{port: "53", protocol: UDP}, {port: "53", protocol: TCP}]}]
"""


def in_pod(pod: Pod, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", pod.ns, *argv], capture_output=True,
                          text=True, timeout=30)


def getent(pod: Pod, name: str) -> list[str]:
    """The addresses `getent hosts NAME` prints in the pod ([] when it finds none)."""
    out = in_pod(pod, "getent", "hosts", name)
    return sorted(line.split()[0] for line in out.stdout.splitlines() if line.strip())


def query(pod: Pod, name: str, transport: str = "udp") -> str:
    """One query straight to the pod's nameserver: 'RCODE addr...'."""
    out = in_pod(pod, sys.executable, "-c", QUERY, name, transport)
    assert out.returncode == 0 or out.stdout.strip() == "TIMEOUT", out.stderr
    return out.stdout.strip()


def wait_for(pod: Pod, name: str, want: list[str]) -> None:
    deadline = time.monotonic() + WAIT
    while (got := getent(pod, name)) != want:
        assert time.monotonic() < deadline, f"{name} from {pod.name}: {got}, wanted {want}"
        time.sleep(0.2)


def test_pods_resolve_services_by_name(lab: Cluster) -> None:
    web1 = lab.add_pod("web-1", "n1", ["k8s:app=web"], serve=True)
    web2 = lab.add_pod("web-2", "n2", ["k8s:app=web"], serve=True)
    near = lab.add_pod("client", "n1", ["k8s:app=client"])
    far = lab.add_pod("client-2", "n2", ["k8s:app=client"])
    with grpc.insecure_channel(lab.cp_address) as channel:
        applied = service_pb2_grpc.ServiceServiceStub(channel).Apply(
            service_pb2.ApplyServicesRequest(yaml=SERVICES), timeout=30)
    vip = next(s.service.cluster_ip for s in applied.services if s.service.name == "web")
    assert vip

    for pod in (near, far):   # each node's agent answers its own pods
        wait_for(pod, "web.default.svc.cluster.local", [vip])
        assert getent(pod, "web.default.svc") == [vip]
        assert getent(pod, "web.default") == [vip]
        assert getent(pod, "web") == [vip]
        # Headless: the backends' own addresses.
        wait_for(pod, "web-hl", sorted([web1.ip, web2.ip]))

    assert query(near, "web.default.svc.cluster.local") == f"NOERROR {vip}"
    assert query(near, "web.default.svc.cluster.local", "tcp") == f"NOERROR {vip}"
    assert query(near, "nosuch.default.svc.cluster.local") == "NXDOMAIN"
    assert query(far, "example.org") == "NXDOMAIN"
    assert getent(near, "nosuch") == []
    assert in_pod(near, "getent", "hosts", "nosuch").returncode == 2   # not found

    # curl by name reaches the service (either backend answers with its name).
    out = in_pod(near, "curl", "-s", "--max-time", "5", "http://web/")
    assert out.returncode == 0 and out.stdout.strip() in {"web-1", "web-2"}, out
    out = in_pod(far, "curl", "-s", "--max-time", "5", "http://web.default.svc.cluster.local/")
    assert out.returncode == 0 and out.stdout.strip() in {"web-1", "web-2"}, out


def apply_policy(lab: Cluster, yaml: str) -> None:
    """Through the control plane, then wait until every node enforces it."""
    with grpc.insecure_channel(lab.cp_address) as channel:
        applied = policy_pb2_grpc.PolicyServiceStub(channel).Apply(
            policy_pb2.ApplyPoliciesRequest(yaml=yaml), timeout=30)
        waited = subscription_pb2_grpc.SubscriptionAdminServiceStub(channel).WaitForRevision(
            subscription_pb2.WaitForRevisionRequest(revision=applied.revision,
                                                    timeout_seconds=20), timeout=30)
        assert waited.converged, waited


def test_egress_policy_must_allow_dns_to_the_host(lab: Cluster) -> None:
    """The server is the node itself (reserved:host): a pod whose egress is enforced needs
    port 53 to the host allowed; ingress enforcement does not matter (replies are tracked)."""
    locked = lab.add_pod("locked", "n1", ["k8s:app=locked"])
    apply_policy(lab, LOCKED)
    name = "web.default.svc.cluster.local"
    assert query(locked, name) == "TIMEOUT"   # dropped at the pod's egress
    apply_policy(lab, LOCKED + DNS_RULE)
    vip = getent(lab.pods["client"], name)
    assert query(locked, name) == f"NOERROR {vip[0]}"
    assert getent(locked, "web") == vip


def test_a_deleted_service_stops_resolving(lab: Cluster) -> None:
    client = lab.pods["client"]
    with grpc.insecure_channel(lab.cp_address) as channel:
        service_pb2_grpc.ServiceServiceStub(channel).Delete(
            service_pb2.DeleteServiceRequest(
                service=service_pb2.ServiceRef(namespace="default", name="web")), timeout=30)
    wait_for(client, "web", [])
    assert query(client, "web.default.svc.cluster.local") == "NXDOMAIN"
