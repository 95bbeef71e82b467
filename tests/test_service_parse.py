"""Kubernetes v1 Service manifests: accepted unchanged, refused with the path of each problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.parsepool import INLINE_BYTES, parse_off_loop
from controlplane.records.codec import ServicePortRecord
from controlplane.services.parse import ServiceValidationError, parse_services
from controlplane.yamldocs import DocumentsError

STARWARS = Path("/work/shared/starwars/http-sw-app.yaml")
HEAD = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n"


def problems(text: str) -> list[str]:
    with pytest.raises(ServiceValidationError) as err:
        parse_services(text)
    return [str(v) for v in err.value.violations]


def test_the_demo_manifest_is_taken_as_it_is_and_other_kinds_are_skipped() -> None:
    text = STARWARS.read_text() if STARWARS.exists() else DEMO
    parsed = parse_services(text)
    [deathstar] = parsed.services
    assert (deathstar.namespace, deathstar.name, deathstar.headless) == ("default", "deathstar",
                                                                         False)
    assert deathstar.ports == (ServicePortRecord("", 80, "TCP", 80, ""),)
    assert deathstar.selector == ("class=deathstar", "org=empire")
    assert deathstar.labels == ("app.kubernetes.io/name=deathstar",)
    assert [s.note() for s in parsed.skipped] == [
        "documents[1]: Deployment deathstar (apps/v1) skipped: not a Service",
        "documents[2]: Pod tiefighter (v1) skipped: not a Service",
        "documents[3]: Pod xwing (v1) skipped: not a Service"]


def test_every_supported_field() -> None:
    [svc] = parse_services(HEAD + """\
  namespace: shop
  annotations: {example.com/owner: "team a=b"}
spec:
  type: ClusterIP
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  sessionAffinity: ClientIP
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: dns, port: 53, protocol: UDP, targetPort: dns-udp}
""").services
    assert (svc.namespace, svc.requested_ip, svc.client_ip_affinity) == ("shop", "10.96.0.10",
                                                                         True)
    assert svc.annotations == ("example.com/owner=team a=b",)
    assert svc.ports == (ServicePortRecord("http", 80, "TCP", 8080, ""),
                         ServicePortRecord("dns", 53, "UDP", 0, "dns-udp"))


def test_headless() -> None:
    [svc] = parse_services(HEAD + "spec:\n  clusterIP: None\n  selector: {app: web}\n").services
    assert svc.headless and svc.requested_ip == "" and svc.ports == ()


@pytest.mark.parametrize(("spec", "expected"), [
    ("type: NodePort\n  ports: [{port: 80}]",
     "spec.type: NodePort services are not supported (ClusterIP only)"),
    ("type: LoadBalancer\n  ports: [{port: 80}]",
     "spec.type: LoadBalancer services are not supported (ClusterIP only)"),
    ("type: ExternalName\n  externalName: x.example\n  ports: [{port: 80}]",
     "spec.type: ExternalName services are not supported (ClusterIP only)"),
    ("ports: [{port: 80, nodePort: 30080}]",
     "spec.ports[0].nodePort: NodePort services are not supported (ClusterIP only)"),
    ("ports: [{port: 80}]\n  colour: blue", "spec.colour: unknown field"),
    ("ports: [{port: 0}]", "spec.ports[0].port: must be 1-65535, not 0"),
    ("ports: [{port: 80, protocol: SCTP}]",
     "spec.ports[0].protocol: SCTP is not supported (TCP or UDP)"),
    ("ports: [{port: 80, targetPort: '8080'}]",
     "spec.ports[0].targetPort: '8080' is not a port number or a port name (IANA service name)"),
    ("ports: [{port: 80}, {port: 81}]",
     "spec.ports[0].name: is required when a service has several ports"),
    ("ports: []", "spec.ports: a ClusterIP service needs at least one port"),
    ("clusterIP: 10.96.0.300\n  ports: [{port: 80}]",
     "spec.clusterIP: '10.96.0.300' is not an IPv4 address or None"),
    ("sessionAffinity: Sticky\n  ports: [{port: 80}]",
     "spec.sessionAffinity: must be None or ClientIP, not 'Sticky'"),
    ("selector: {'bad key!': x}\n  ports: [{port: 80}]",
     "spec.selector.bad key!: 'bad key!' is not a valid label key"),
])
def test_what_is_not_implemented_or_wrong_is_refused_with_its_path(spec: str,
                                                                   expected: str) -> None:
    assert expected in problems(HEAD + "spec:\n  " + spec + "\n")


def test_paths_name_the_document_and_every_problem_is_reported() -> None:
    nodeport = HEAD + "spec:\n  type: NodePort\n  ports: [{port: 80}]\n"
    bad_name = HEAD.replace("web", "Bad") + "spec: {ports: [{port: 1}]}\n"
    found = problems(STARWARS_LIKE + "---\n" + nodeport + "---\n" + bad_name)
    assert "documents[2].spec.type: NodePort services are not supported (ClusterIP only)" in found
    assert any(f.startswith("documents[3].metadata.name: 'Bad' is not a valid service name")
               for f in found)


def test_other_refusals() -> None:
    assert problems("kind: Deployment\napiVersion: apps/v1\n") == [
        "file: contains no Service document (apiVersion: v1, kind: Service)"]
    assert problems(HEAD.replace("v1", "v2") + "spec: {ports: [{port: 1}]}\n") == [
        "apiVersion: must be v1, not 'v2'"]
    assert problems("a: &x 1\nb: *x\n")[0].startswith("yaml: ")
    assert "duplicate key" in problems(HEAD + "spec: {ports: [{port: 1}]}\nspec: {}\n")[0]
    twice = HEAD + "spec: {ports: [{port: 1}]}\n"
    assert problems(twice + "---\n" + twice) == [
        "documents[1].metadata.name: service default/web is already defined by documents[0]"]


STARWARS_LIKE = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec: {replicas: 2}
---
apiVersion: v1
kind: Pod
metadata: {name: p}
"""
DEMO = """\
apiVersion: v1
kind: Service
metadata:
  name: deathstar
  labels:
    app.kubernetes.io/name: deathstar
spec:
  type: ClusterIP
  ports:
  - port: 80
  selector:
    org: empire
    class: deathstar
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: deathstar
spec:
  replicas: 2
---
apiVersion: v1
kind: Pod
metadata:
  name: tiefighter
---
apiVersion: v1
kind: Pod
metadata:
  name: xwing
"""


def big_file(port: str = "80") -> str:
    text = "---\n".join(HEAD.replace("web", f"web{i}") + "  labels: {" +
                        ", ".join(f"k{j}: v{j}" for j in range(5)) +
                        f"}}\nspec:\n  ports: [{{port: {port}}}]\n" for i in range(250))
    assert len(text) > INLINE_BYTES   # really goes through the child
    return text


async def test_a_large_file_parses_in_a_child_as_in_place() -> None:
    text = big_file()
    assert await parse_off_loop(text, "service") == parse_services(text)
    with pytest.raises(DocumentsError) as exc:
        await parse_off_loop(big_file(port="0"), "service")
    assert len(exc.value.violations) == 250
    assert str(exc.value.violations[249]) == \
        "documents[249].spec.ports[0].port: must be 1-65535, not 0"


def test_clustermesh_annotations_are_checked() -> None:
    doc = """
apiVersion: v1
kind: Service
metadata:
  name: echo
  annotations:
    service.cilium.io/global: "yes"
    service.cilium.io/affinity: closest
    service.cilium.io/shared: "false"
spec:
  selector: {app: echo}
  ports: [{port: 80}]
"""
    assert problems(doc) == [
        "metadata.annotations.service.cilium.io/affinity: 'closest' is not one of local, "
        "remote, none",
        "metadata.annotations.service.cilium.io/global: 'yes' is not one of true, false"]
    fine = doc.replace('"yes"', '"true"').replace("closest", "Local")
    assert parse_services(fine).services[0].annotations == (
        "service.cilium.io/affinity=Local", "service.cilium.io/global=true",
        "service.cilium.io/shared=false")
