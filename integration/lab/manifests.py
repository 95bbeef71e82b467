"""`bulkhead-lab apply|delete -f FILE`: Kubernetes manifests (the Star Wars demo's
`http-sw-app.yaml`, unchanged) played on a lab. Services go to the control plane's
ServiceService; a Deployment becomes `spec.replicas` pods named as Kubernetes names them
(`NAME-<pod-template-hash>-<5 random>`), a Pod one pod; both spread over the nodes round-robin.
What a pod serves follows its image: `cilium/starwars` answers the deathstar API, anything else
is an idle pod (its namespace has the host's curl); the annotation `bulkhead.io/app`
(`deathstar|name|none`) overrides that.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from bulkhead.errors import FieldViolation, shown
from bulkhead.labelkey import key_problem
from bulkhead.portname import RULE as PORT_NAME_RULE
from bulkhead.portname import is_port_name
from bulkhead.rpcerror import describe
from bulkhead.v1 import agent_pb2, service_pb2, service_pb2_grpc, types_pb2
from controlplane.yamldocs import DocumentsError, load_documents, type_name

from . import credentials
from .lab import Lab, LabError, pod_labels
from .state import LabState, PodState

APP_ANNOTATION = "bulkhead.io/app"
APPS = ("deathstar", "name", "none")
DEATHSTAR_IMAGE = "cilium/starwars"
MAX_REPLICAS = 64
SERVICE_WAIT = 30.0        # an upper bound for every node to load-balance the services
# Kubernetes' rand.String / SafeEncodeString alphabet: no vowels, no 0/1/3 (no words, no
# look-alikes).
ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")

Say = Callable[[str], None]


@dataclass
class Workload:
    """A Deployment or a Pod of the file: what its pods look like and how many."""

    kind: str
    namespace: str
    name: str
    labels: list[str]            # k=v, as in the manifest
    app: str                     # deathstar | name | none
    ports: list[str]             # the container ports' numbers: what the pod serves
    replicas: int = 1
    template_hash: str = ""      # Deployments only
    container_ports: list[tuple[str, int, str]] = field(default_factory=list)
    """(name, containerPort, protocol) of every container port: the endpoint's ports, which a
    Service's named targetPort resolves to."""

    @property
    def owner(self) -> str:
        """What a pod's `owner` records: its Deployment (a Pod is its own)."""
        return f"Deployment {self.namespace}/{self.name}" if self.kind == "Deployment" else ""

    @property
    def prefix(self) -> str:
        return f"{self.name}-{self.template_hash}-"


@dataclass
class Manifest:
    text: str
    services: list[tuple[str, str]] = field(default_factory=list)   # (namespace, name)
    workloads: list[Workload] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def template_hash(template: dict[str, Any]) -> str:
    """A Deployment's pod-template-hash, made like Kubernetes makes it: a 32-bit FNV-1a hash of
    the template (here of its canonical JSON, there of Go's dump of it) in decimal, each digit
    mapped into ALPHANUMS. So a changed template gets new pod names, the same template the
    same ones (10 characters for most templates, as in Kubernetes; fewer below 10^9)."""
    digest = 0x811C9DC5
    for byte in json.dumps(template, sort_keys=True, separators=(",", ":")).encode():
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(ALPHANUMS[ord(c) % len(ALPHANUMS)] for c in str(digest))


def pod_suffix() -> str:
    return "".join(secrets.choice(ALPHANUMS) for _ in range(5))


def app_for(image: str) -> str:
    """The deathstar API for the demo's image (any registry, tag or digest), else idle."""
    repo = image.split("@", 1)[0]
    if ":" in repo.rsplit("/", 1)[-1]:
        repo = repo.rsplit(":", 1)[0]
    return "deathstar" if repo == DEATHSTAR_IMAGE or repo.endswith("/" + DEATHSTAR_IMAGE) \
        else "none"


class _Parser:
    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def fail(self, path: str, description: str) -> None:
        self.violations.append(FieldViolation(path, description))

    def mapping(self, value: Any, path: str, required: bool = False) -> dict[str, Any]:
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping, not {type_name(value)}")
            return {}
        return value

    def name(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value:
            self.fail(path, "is required" if value is None else
                      f"must be a string, not {type_name(value)}")
            return ""
        if len(value) > 63 or not _NAME.fullmatch(value):
            self.fail(path, f"{shown(value)} is not a lowercase DNS name of at most 63 "
                            f"characters")
            return ""
        return value

    def labels(self, value: Any, path: str) -> list[str]:
        out = []
        for key, val in self.mapping(value, path).items():
            if not isinstance(key, str) or not key:
                self.fail(path, f"a label key must be a string, not {type_name(key)}")
            elif (why := key_problem(key)) is not None:
                self.fail(f"{path}[{key}]", why)
            elif not isinstance(val, str) or len(val) > 63 or not _LABEL_VALUE.fullmatch(val):
                self.fail(f"{path}[{key}]", f"{shown(val)} is not a label value")
            else:
                out.append(f"{key}={val}")
        return out

    def pod_spec(self, meta: dict[str, Any], spec: Any, path: str
                 ) -> tuple[str, list[tuple[str, int, str]]]:
        containers = self.mapping(spec, path, required=True).get("containers")
        if not isinstance(containers, list) or not containers:
            self.fail(f"{path}.containers", "must be a non-empty list")
            return "none", []
        app, ports = "none", []
        for i, container in enumerate(containers):
            c = self.mapping(container, f"{path}.containers[{i}]", required=True)
            image = c.get("image")
            if not isinstance(image, str) or not image:
                self.fail(f"{path}.containers[{i}].image", "must be a non-empty string")
                continue
            if app_for(image) == "deathstar":
                app = "deathstar"
            for j, port in enumerate(c.get("ports") or []):
                made = self.container_port(port, f"{path}.containers[{i}].ports[{j}]")
                if made is not None:
                    ports.append(made)
        annotations = self.mapping(meta.get("annotations"), "metadata.annotations")
        if APP_ANNOTATION in annotations:
            app = annotations[APP_ANNOTATION]
            if app not in APPS:
                self.fail(f"metadata.annotations[{APP_ANNOTATION}]",
                          f"{shown(app)} is not one of {', '.join(APPS)}")
        return app, ports

    def container_port(self, port: Any, path: str) -> tuple[str, int, str] | None:
        """(name, containerPort, protocol); duplicates are the control plane's to refuse."""
        port = self.mapping(port, path, required=True)
        number, name = port.get("containerPort"), port.get("name", "")
        protocol = port.get("protocol", "TCP")
        before = len(self.violations)
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= 65535:
            self.fail(f"{path}.containerPort", "must be a port number 1-65535")
        if not isinstance(name, str) or (name and not is_port_name(name)):
            self.fail(f"{path}.name", f"{shown(name)} is not a port name ({PORT_NAME_RULE})")
        if protocol not in ("TCP", "UDP"):
            self.fail(f"{path}.protocol", f"must be TCP or UDP, not {shown(protocol)}")
        if len(self.violations) > before:
            return None
        return name, number, protocol

    def workload(self, doc: dict[str, Any], kind: str) -> Workload | None:
        meta = self.mapping(doc.get("metadata"), "metadata", required=True)
        name = self.name(meta.get("name"), "metadata.name")
        namespace = meta.get("namespace", "default")
        namespace = self.name(namespace, "metadata.namespace")
        if kind == "Pod":
            labels = self.labels(meta.get("labels"), "metadata.labels")
            app, ports = self.pod_spec(meta, doc.get("spec"), "spec")
            return Workload(kind, namespace, name, labels, app, _numbers(ports),
                            container_ports=ports)
        spec = self.mapping(doc.get("spec"), "spec", required=True)
        replicas = spec.get("replicas", 1)
        if not isinstance(replicas, int) or isinstance(replicas, bool) \
                or not 0 <= replicas <= MAX_REPLICAS:
            self.fail("spec.replicas", f"{shown(replicas)} is not a number 0-{MAX_REPLICAS}")
            replicas = 0
        template = self.mapping(spec.get("template"), "spec.template", required=True)
        tmeta = self.mapping(template.get("metadata"), "spec.template.metadata")
        labels = self.labels(tmeta.get("labels"), "spec.template.metadata.labels")
        app, ports = self.pod_spec(tmeta, template.get("spec"), "spec.template.spec")
        return Workload(kind, namespace, name, labels, app, _numbers(ports), replicas,
                        template_hash(template), ports)


def _numbers(ports: list[tuple[str, int, str]]) -> list[str]:
    return list(dict.fromkeys(str(number) for _, number, _ in ports))


def parse_manifest(text: str) -> Manifest:
    """Services, Deployments and Pods of `text`; other kinds become notes. Raises LabError
    naming every bad field (`documents[1].spec.replicas: ...`)."""
    try:
        docs = load_documents(text)
    except DocumentsError as exc:
        raise LabError("\n  ".join(["invalid manifest", *map(str, exc.violations)])) from None
    manifest = Manifest(text)
    violations: list[FieldViolation] = []
    for index, doc in enumerate(docs):
        where = f"documents[{index}]" if len(docs) > 1 else ""
        parser = _Parser()
        doc = parser.mapping(doc, "document", required=True)
        kind = doc.get("kind")
        meta: dict[str, Any] = doc["metadata"] if isinstance(doc.get("metadata"), dict) else {}
        name = meta.get("name")
        if kind == "Service":   # validated by the control plane
            manifest.services.append((str(meta.get("namespace", "default")), str(name)))
        elif kind in ("Deployment", "Pod"):
            made = parser.workload(doc, str(kind))
            if made is not None and not parser.violations:
                manifest.workloads.append(made)
        elif doc:
            manifest.notes.append(f"{where or 'document'}: {kind} {name} skipped: "
                                  f"bulkhead-lab takes Service, Deployment and Pod")
        violations += [FieldViolation(f"{where}.{v.field}" if where else v.field,
                                      v.description) for v in parser.violations]
    if violations:
        raise LabError("\n  ".join(["invalid manifest", *map(str, violations)]))
    return manifest


def _services_stub(state: LabState) -> service_pb2_grpc.ServiceServiceStub:
    return service_pb2_grpc.ServiceServiceStub(credentials.channel(state))


def _pod_json(pod: PodState, action: str) -> dict[str, Any]:
    return {"name": pod.name, "namespace": pod.namespace, "node": pod.node, "ip": pod.ip,
            "identity": pod.identity, "labels": sorted(pod.labels), "owner": pod.owner,
            "action": action}


class Applier:
    """Plays a parsed manifest on a lab; `say` gets one line per object."""

    def __init__(self, lab: Lab, say: Say) -> None:
        self.lab = lab
        self.say = say
        self.pods: list[dict[str, Any]] = []
        self.services: list[dict[str, Any]] = []

    def _rpc(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except grpc.RpcError as exc:
            raise LabError(f"the control plane refused: {describe(exc)}") from None

    # -- apply ---------------------------------------------------------------------------

    def apply(self, manifest: Manifest) -> dict[str, Any]:
        state = self.lab.state()
        if state.datapath == "none" and manifest.services:
            raise LabError("services need the Bulkhead datapath (this lab is --datapath=none)")
        applied: list[types_pb2.Service] = []
        if manifest.services:
            result = self._rpc(lambda: _services_stub(state).Apply(
                service_pb2.ApplyServicesRequest(yaml=manifest.text), timeout=60))
            for one in result.services:
                svc = one.service
                where = "headless" if svc.headless else svc.cluster_ip
                self.say(f"service {svc.namespace}/{svc.name} {one.action} ({where})")
                applied.append(svc)
        turn = len(state.pods)
        for workload in manifest.workloads:
            turn = self._workload(workload, turn)
        if applied and state.datapath != "none":
            applied = self._wait_for_services(applied)
        self.services = [{"namespace": s.namespace, "name": s.name,
                          "cluster_ip": s.cluster_ip,
                          "backends": sorted(b.endpoint for b in s.backends)}
                         for s in applied]
        return {"services": self.services, "pods": self.pods, "notes": manifest.notes}

    def _workload(self, workload: Workload, turn: int) -> int:
        state = self.lab.state()
        if workload.kind == "Pod":
            wanted = [workload.name]
            existing = [p for p in state.pods.values() if p.name == workload.name]
        else:
            existing = [p for p in state.pods.values() if p.owner == workload.owner]
            stale = [p for p in existing if not p.name.startswith(workload.prefix)]
            for pod in stale:   # the template changed: its pods are replaced
                self._delete_pod(pod, workload)
            kept = [p for p in existing if p not in stale]
            while len(kept) > workload.replicas:   # scale down where most of them run
                counts = Counter(p.node for p in kept)
                victim = max(kept, key=lambda p: (counts[p.node], p.name))
                kept.remove(victim)
                self._delete_pod(victim, workload)
            existing = sorted(kept, key=lambda p: p.name)
            wanted = [p.name for p in existing]
            while len(wanted) < workload.replicas:
                name = workload.prefix + pod_suffix()
                if name not in state.pods and name not in wanted:
                    wanted.append(name)
        nodes = list(state.nodes)
        for name in wanted:
            kept_pod = next((p for p in existing if p.name == name), None)
            if kept_pod is not None:
                self.pods.append(_pod_json(kept_pod, "unchanged"))
                differs = sorted(kept_pod.labels) != sorted(pod_labels(workload.labels,
                                                                       workload.namespace))
                self.say(f"pod {kept_pod.namespace}/{name} unchanged (on {kept_pod.node})" +
                         ("; its labels differ from the file's: `delete -f`, then `apply -f`"
                          " to recreate it" if differs else ""))
                continue
            # Round-robin, but a Deployment's pods go where fewest of them run (its spread).
            ring = nodes[turn % len(nodes):] + nodes[:turn % len(nodes)]
            node = min(ring, key=lambda n: sum(p.node == n for p in existing))
            turn += 1
            serve = [] if workload.app == "none" else (workload.ports or ["80"])
            pod = self.lab.pod_create(name, node, workload.namespace, workload.labels, serve,
                                      workload.app if serve else "name", workload.owner,
                                      workload.container_ports)
            self.pods.append(_pod_json(pod, "created"))
            existing.append(pod)
            what = f", serving {workload.app} on {','.join(serve)}" if serve else ""
            self.say(f"pod {pod.namespace}/{pod.name} created on {node} ({pod.ip}{what})")
        return turn

    def _delete_pod(self, pod: PodState, workload: Workload | None = None) -> None:
        self.lab.pod_delete(pod.name)
        self.pods.append(_pod_json(pod, "deleted"))
        of = f" ({workload.kind.lower()} {workload.namespace}/{workload.name})" \
            if workload and workload.owner else ""
        self.say(f"pod {pod.namespace}/{pod.name} deleted{of}")

    def _wait_for_services(self, applied: list[types_pb2.Service]) -> list[types_pb2.Service]:
        """Waits until every node's load-balancer map has each service's current backends (a
        command that follows reaches them), and returns the services as they are then."""
        state = self.lab.state()
        stub = _services_stub(state)
        deadline = time.monotonic() + SERVICE_WAIT
        while True:
            current = [self._get(stub, s) for s in applied]
            want = {f"{s.cluster_ip}:{p.port}/{p.protocol}": {
                f"{b.ip}:{b.port}" for b in s.backends
                if b.port_name == p.name and b.protocol == p.protocol}
                for s in current if not s.headless for p in s.ports}
            pending = [n for n in state.nodes.values() if not self._node_has(n, want)]
            if not pending:
                return current
            if time.monotonic() > deadline:
                raise LabError(f"nodes {', '.join(n.name for n in pending)} do not "
                               f"load-balance the services after {SERVICE_WAIT:.0f} s "
                               f"(`bulkhead agent --node NODE bpf lb list`)")
            time.sleep(0.2)

    def _get(self, stub: service_pb2_grpc.ServiceServiceStub,
             svc: types_pb2.Service) -> types_pb2.Service:
        ref = service_pb2.ServiceRef(namespace=svc.namespace, name=svc.name)
        found: types_pb2.Service = self._rpc(
            lambda: stub.Get(service_pb2.GetServiceRequest(service=ref), timeout=30))
        return found

    def _node_has(self, node: Any, want: dict[str, set[str]]) -> bool:
        try:
            dump = self.lab.agent(node).DumpMap(agent_pb2.DumpMapRequest(map="lb"), timeout=10)
        except grpc.RpcError:
            return False
        have: dict[str, set[str]] = {}
        for row in dump.rows:
            frontend = row.fields.get("SERVICE ADDRESS", "")
            backend = row.fields.get("BACKEND ADDRESS (REVNAT_ID) (SLOT)", "")
            slot = have.setdefault(frontend, set())
            if not backend.startswith("0.0.0.0:0 "):
                slot.add(backend.split(" ", 1)[0])
        return all(have.get(fe) == backends for fe, backends in want.items())

    # -- delete --------------------------------------------------------------------------

    def delete(self, manifest: Manifest) -> dict[str, Any]:
        state = self.lab.state()
        for workload in manifest.workloads:
            if workload.kind == "Pod":
                gone = [p for p in state.pods.values() if p.name == workload.name]
            else:
                gone = [p for p in state.pods.values() if p.owner == workload.owner]
            for pod in sorted(gone, key=lambda p: p.name):
                self._delete_pod(pod, workload)
            if not gone:
                self.say(f"{workload.kind.lower()} {workload.namespace}/{workload.name}: "
                         f"{'no pods' if workload.owner else 'not found'} (already deleted)")
        if manifest.services and state.datapath != "none":
            stub = _services_stub(state)
            for namespace, name in manifest.services:
                try:
                    stub.Delete(service_pb2.DeleteServiceRequest(
                        service=service_pb2.ServiceRef(namespace=namespace, name=name)),
                        timeout=60)
                    action, shown_as = "deleted", "deleted"
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.NOT_FOUND:
                        raise LabError(f"the control plane refused: {describe(exc)}") from None
                    action, shown_as = "not_found", "not found (already deleted)"
                self.say(f"service {namespace}/{name} {shown_as}")
                self.services.append({"namespace": namespace, "name": name, "action": action})
        return {"services": self.services, "pods": self.pods, "notes": manifest.notes}
