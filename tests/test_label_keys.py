"""Label keys with a `prefix/` (`app.kubernetes.io/name`, as the Star Wars demo's manifest
has them) follow one rule everywhere: endpoint labels and their identity, policy selectors,
service selectors and lab manifests accept them; malformed keys are refused naming the field."""

from __future__ import annotations

import grpc
import pytest

from bulkhead.labelkey import key_problem
from bulkhead.rpcerror import field_violations
from bulkhead.v1 import (
    endpoint_pb2,
    endpoint_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    service_pb2,
    service_pb2_grpc,
)
from controlplane.identity.labels import parse_labels
from controlplane.policy.parse import parse_policies
from controlplane.services.parse import ServiceValidationError, parse_services
from integration.lab.lab import LabError
from integration.lab.manifests import parse_manifest
from integration.lab.story import MANIFEST
from tests.conftest import ReplicaFactory

pytestmark = pytest.mark.timeout(90)

NS = "k8s:io.kubernetes.pod.namespace=default"
NAME = "k8s:app.kubernetes.io/name=deathstar"
GOOD = ["app", "app.kubernetes.io/name", "a/b", "example.com/Some_Name.v2", "x" * 63,
        "a" * 253 + "/" + "n" * 63]
BAD = ["", "/name", "a/", "a/b/c", "Example.com/name", "ex_ample.com/name", "-app", "app-",
       "a b", "x" * 64, "a" * 254 + "/n", "a:b"]
SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: deathstar}
spec:
  selector: {app.kubernetes.io/name: deathstar}
  ports: [{port: 80}]
"""
POLICY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: by-name}
spec:
  endpointSelector: {matchLabels: {app.kubernetes.io/name: deathstar}}
  ingress:
  - fromEndpoints: [{matchLabels: {"k8s:app.kubernetes.io/name": tiefighter}}]
"""


def test_one_rule_for_a_key() -> None:
    assert [k for k in GOOD if key_problem(k)] == []
    assert [k for k in BAD if not key_problem(k)] == []


def test_labels_take_prefixed_keys_and_refuse_bad_ones_by_index() -> None:
    labels, problems = parse_labels([NAME, "k8s:class=deathstar", NS])
    assert problems == [] and NAME in labels.labels
    _, problems = parse_labels(["k8s:ok=1", "k8s:a/b/c=d", "k8s:Upper.io/x=y", "k8s:/x=y"])
    assert [p.field for p in problems] == ["labels[1]", "labels[2]", "labels[3]"]
    assert "app.kubernetes.io/" in problems[0].description


def test_selectors_take_the_same_keys() -> None:
    assert parse_services(SERVICE).services
    assert parse_policies(POLICY)
    with pytest.raises(ServiceValidationError) as err:
        parse_services(SERVICE.replace("app.kubernetes.io/name", "app.kubernetes.io/a/b"))
    assert [str(v) for v in err.value.violations] == [
        "spec.selector.app.kubernetes.io/a/b: 'app.kubernetes.io/a/b' is not a valid label key"]


def test_the_demo_manifest_keeps_its_prefixed_labels() -> None:
    manifest = parse_manifest(MANIFEST.read_text())
    assert manifest.notes == []
    assert {w.name: sorted(w.labels) for w in manifest.workloads} == {
        "deathstar": ["app.kubernetes.io/name=deathstar", "class=deathstar", "org=empire"],
        "tiefighter": ["app.kubernetes.io/name=tiefighter", "class=tiefighter", "org=empire"],
        "xwing": ["app.kubernetes.io/name=xwing", "class=xwing", "org=alliance"]}
    bad = MANIFEST.read_text().replace("app.kubernetes.io/name: xwing", "App.io/name: xwing")
    with pytest.raises(LabError, match=r"documents\[3\]\.metadata\.labels\[App\.io/name\]: "
                                       "key prefix must be"):
        parse_manifest(bad)


async def test_through_the_api_identity_policy_and_service(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    channel = replica.channel()
    await node_pb2_grpc.NodeServiceStub(channel).Register(
        node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    endpoints = endpoint_pb2_grpc.EndpointServiceStub(channel)
    made = await endpoints.Create(endpoint_pb2.CreateEndpointRequest(
        name="deathstar-1", node="n1", namespace="default",
        labels=[NAME, "k8s:class=deathstar", NS]))
    ident = await identity_pb2_grpc.IdentityServiceStub(channel).Get(
        identity_pb2.GetIdentityRequest(id=made.identity))
    assert NAME in ident.labels
    tie = await endpoints.Create(endpoint_pb2.CreateEndpointRequest(
        name="tiefighter", node="n1", namespace="default",
        labels=["k8s:app.kubernetes.io/name=tiefighter", NS]))

    policies = policy_pb2_grpc.PolicyServiceStub(channel)
    applied = await policies.Apply(policy_pb2.ApplyPoliciesRequest(yaml=POLICY))
    assert list(applied.affected_identities) == [made.identity]
    resolved = await policies.Resolve(policy_pb2.ResolvePolicyRequest(identity=made.identity))
    assert [(e.direction, e.peer) for e in resolved.entries] == [("ingress", tie.identity)]

    services = service_pb2_grpc.ServiceServiceStub(channel)
    await services.Apply(service_pb2.ApplyServicesRequest(yaml=SERVICE))
    got = await services.Get(service_pb2.GetServiceRequest(
        service=service_pb2.ServiceRef(namespace="default", name="deathstar")))
    assert dict(got.selector) == {"app.kubernetes.io/name": "deathstar"}
    assert [(b.ip, b.endpoint) for b in got.backends] == [(made.ip, "default/deathstar-1")]

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await endpoints.Create(endpoint_pb2.CreateEndpointRequest(
            name="bad", node="n1", namespace="default", labels=[NS, "k8s:a/b/c=d"]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(err.value)] == ["labels[1]"]
