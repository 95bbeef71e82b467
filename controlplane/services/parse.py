"""Kubernetes v1 Service YAML -> validated `ServiceManifest`s, unchanged manifests accepted.

Every problem of every document is reported with its path (`documents[1].spec.type`) before
anything is stored. What Bulkhead does not implement (NodePort, LoadBalancer, ExternalName,
SCTP, fields it does not know) is refused by name rather than ignored: a service that silently
lost a part would not do what its manifest says. Documents of other kinds (a Deployment, a
Pod in the same file) are skipped and reported as notes, so a demo's manifest can be given as
it is. Loading (size, aliases, odd keys) is the one safe loader of every apply
(controlplane/yamldocs.py).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from bulkhead.errors import FieldViolation, shown
from bulkhead.labelkey import is_key as is_label_key
from bulkhead.portname import is_port_name
from controlplane.records.codec import ServicePortRecord
from controlplane.yamldocs import DocumentsError, load_documents, type_name

from .globals import mesh_annotation_problems
from .model import (
    API_VERSION,
    DEFAULT_NAMESPACE,
    KIND,
    TCP,
    UDP,
    ParsedFile,
    ServiceManifest,
    Skipped,
)

MAX_PORTS = 256
MAX_MAP = 256
"""Entries of a selector, label or annotation map."""
MAX_ANNOTATION_BYTES = 256 << 10

_UNSUPPORTED_TYPES = {
    "NodePort": "NodePort services are not supported (ClusterIP only)",
    "LoadBalancer": "LoadBalancer services are not supported (ClusterIP only)",
    "ExternalName": "ExternalName services are not supported (ClusterIP only)",
}
_UNSUPPORTED_SPEC = {
    "externalIPs": "external IPs are not supported",
    "externalName": "ExternalName services are not supported (ClusterIP only)",
    "externalTrafficPolicy": "only applies to NodePort/LoadBalancer services, not supported",
    "loadBalancerIP": "LoadBalancer services are not supported (ClusterIP only)",
    "loadBalancerSourceRanges": "LoadBalancer services are not supported (ClusterIP only)",
    "loadBalancerClass": "LoadBalancer services are not supported (ClusterIP only)",
    "healthCheckNodePort": "NodePort services are not supported (ClusterIP only)",
    "sessionAffinityConfig": "session affinity timeouts are not supported",
    "publishNotReadyAddresses": "readiness is not tracked; not supported",
    "allocateLoadBalancerNodePorts": "LoadBalancer services are not supported (ClusterIP only)",
    "ipFamilies": "IPv4 only; leave it out",
    "ipFamilyPolicy": "IPv4 only; leave it out",
    "internalTrafficPolicy": "not supported",
    "topologyKeys": "not supported",
    "trafficDistribution": "not supported",
}
_SPEC_FIELDS = {"type", "selector", "ports", "clusterIP", "clusterIPs", "sessionAffinity"}
_PORT_FIELDS = {"name", "port", "targetPort", "protocol"}
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")


class ServiceValidationError(DocumentsError):
    """Every problem found in a service file; `violations` name the field of each."""


def parse_services(text: str | bytes) -> ParsedFile:
    """Every Service of a (multi-document) YAML file and the other documents skipped, or
    ServiceValidationError with every problem. Paths are relative to the document, prefixed
    `documents[i].` when there are several."""
    try:
        docs = load_documents(text, "Service")
    except DocumentsError as exc:
        raise ServiceValidationError(exc.violations) from None
    violations: list[FieldViolation] = []
    services: list[ServiceManifest] = []
    skipped: list[Skipped] = []
    first_seen: dict[str, int] = {}
    for i, doc in enumerate(docs):
        parser = _DocumentParser(f"documents[{i}]" if len(docs) > 1 else "")
        other = parser.other_kind(doc, i)
        if other is not None:
            skipped.append(other)
            continue
        service = parser.document(doc)
        violations.extend(parser.violations)
        if service is None:
            continue
        if service.ref in first_seen:
            violations.append(FieldViolation(parser.path("metadata.name"), (
                f"service {service.ref} is already defined by "
                f"documents[{first_seen[service.ref]}]")))
            continue
        first_seen[service.ref] = i
        services.append(service)
    if not services and not violations:
        violations.append(FieldViolation("file", "contains no Service document (apiVersion: "
                                                 "v1, kind: Service)"))
    if violations:
        raise ServiceValidationError(violations)
    return ParsedFile(services, skipped)


class _DocumentParser:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.violations: list[FieldViolation] = []

    def path(self, name: str) -> str:
        if not name:
            return self.prefix or "document"
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, path: str, description: str) -> None:
        self.violations.append(FieldViolation(self.path(path), description))

    def mapping(self, value: Any, path: str, allowed: set[str],
                unsupported: dict[str, str] | None = None) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping, not {type_name(value)}")
            return None
        ok = True
        for key in value:
            sub = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str):
                self.fail(path, f"keys must be strings, not {type_name(key)} ({shown(key)})")
                ok = False
            elif key not in allowed:
                self.fail(sub, (unsupported or {}).get(key, "unknown field"))
                ok = False
        return value if ok else None

    def string(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str):
            self.fail(path, f"must be a string, not {type_name(value)}")
            return None
        return value

    # -- documents ---------------------------------------------------------------------------
    def other_kind(self, doc: Any, index: int) -> Skipped | None:
        """The note for a document of another kind (which is then left alone)."""
        if not isinstance(doc, dict):
            return None
        kind, api_version = doc.get("kind"), doc.get("apiVersion")
        if not isinstance(kind, str) or kind == KIND:
            return None
        meta = doc.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        return Skipped(index, api_version if isinstance(api_version, str) else "", kind,
                       name if isinstance(name, str) else "")

    def document(self, doc: Any) -> ServiceManifest | None:
        body = self.mapping(doc, "", {"apiVersion", "kind", "metadata", "spec", "status"})
        if body is None:
            if not isinstance(doc, dict):
                return None
            body = doc
        if body.get("kind") is None:
            self.fail("kind", f"is required ({KIND}; documents of other kinds are skipped)")
        elif body.get("kind") != KIND:
            self.fail("kind", f"must be a string, not {type_name(body['kind'])}")
        if body.get("apiVersion") != API_VERSION:
            self.fail("apiVersion", f"must be {API_VERSION}, not {shown(body.get('apiVersion'))}"
                      if "apiVersion" in body else f"is required ({API_VERSION})")
        namespace, name, labels, annotations = self.metadata(body.get("metadata"))
        spec = self.spec(body.get("spec"))
        if self.violations or spec is None or name is None or namespace is None:
            return None
        headless, requested, ports, selector, affinity = spec
        return ServiceManifest(namespace, name, headless, requested, ports, selector, labels,
                               annotations, affinity, self.prefix)

    def metadata(self, value: Any) -> tuple[str | None, str | None, tuple[str, ...],
                                            tuple[str, ...]]:
        if value is None:
            self.fail("metadata.name", "is required")
            return None, None, (), ()
        meta = self.mapping(value, "metadata", {"name", "namespace", "labels", "annotations"})
        if meta is None:
            return None, None, (), ()
        name = meta.get("name")
        if name is None:
            self.fail("metadata.name", "is required")
        elif (name := self.string(name, "metadata.name")) is not None and (
                len(name) > 63 or not _DNS_LABEL.fullmatch(name) or name[0].isdigit()):
            self.fail("metadata.name", f"{shown(name)} is not a valid service name (lower-case "
                                       "DNS label starting with a letter, at most 63 characters)")
            name = None
        namespace = self.string(meta.get("namespace", DEFAULT_NAMESPACE), "metadata.namespace")
        if namespace is not None and (len(namespace) > 63 or
                                      not _DNS_LABEL.fullmatch(namespace)):
            self.fail("metadata.namespace", f"{shown(namespace)} is not a valid namespace "
                                            "(lower-case DNS label, at most 63 characters)")
            namespace = None
        labels = self.string_map(meta.get("labels", {}), "metadata.labels", values=True)
        annotations = self.string_map(meta.get("annotations", {}), "metadata.annotations",
                                      values=False)
        if sum(len(a) for a in annotations) > MAX_ANNOTATION_BYTES:
            self.fail("metadata.annotations", f"more than {MAX_ANNOTATION_BYTES} bytes")
        for key, problem in mesh_annotation_problems(annotations):
            self.fail(f"metadata.annotations.{key}", problem)
        return namespace, name, labels, annotations

    def string_map(self, value: Any, path: str, *, values: bool) -> tuple[str, ...]:
        """A label-style map as sorted "key=value" strings; `values`: check label values."""
        if value is None:
            return ()
        found = self.mapping(value, path, set(value) if isinstance(value, dict) else set())
        if found is None:
            return ()
        if len(found) > MAX_MAP:
            self.fail(path, f"has {len(found)} entries, more than the limit of {MAX_MAP}")
            return ()
        pairs = []
        for key, item in found.items():
            sub = f"{path}.{key}"
            if not self.label_key(key, sub):
                continue
            text = self.string(item, sub)
            if text is None:
                continue
            if values and text and (len(text) > 63 or not _NAME.fullmatch(text)):
                self.fail(sub, f"{shown(text)} is not a valid label value (at most 63 "
                               "characters: letters, digits, '-', '_', '.')")
                continue
            pairs.append(f"{key}={text}")
        return tuple(sorted(pairs))

    def label_key(self, key: str, path: str) -> bool:
        if not is_label_key(key):
            self.fail(path, f"{shown(key)} is not a valid label key")
            return False
        return True

    # -- spec --------------------------------------------------------------------------------
    def spec(self, value: Any) -> tuple[bool, str, tuple[ServicePortRecord, ...],
                                        tuple[str, ...], bool] | None:
        if value is None:
            self.fail("spec", "is required")
            return None
        spec = self.mapping(value, "spec", _SPEC_FIELDS, _UNSUPPORTED_SPEC)
        if spec is None:
            if not isinstance(value, dict):
                return None
            # Report the known fields' problems too, so a file is fixed in one round.
            spec = {k: v for k, v in value.items() if k in _SPEC_FIELDS}
        kind = spec.get("type", "ClusterIP")
        if kind in _UNSUPPORTED_TYPES:
            self.fail("spec.type", _UNSUPPORTED_TYPES[kind])
        elif kind != "ClusterIP":
            self.fail("spec.type", f"must be ClusterIP, not {shown(kind)}")
        headless, requested = self.cluster_ip(spec)
        ports = self.ports(spec.get("ports", []), headless)
        selector = self.string_map(spec.get("selector", {}), "spec.selector", values=True)
        affinity = spec.get("sessionAffinity", "None")
        if affinity not in ("None", "ClientIP"):
            self.fail("spec.sessionAffinity", f"must be None or ClientIP, not {shown(affinity)}")
        return headless, requested, ports, selector, affinity == "ClientIP"

    def cluster_ip(self, spec: dict[str, Any]) -> tuple[bool, str]:
        """(headless, the requested address or "")."""
        value = spec.get("clusterIP")
        if "clusterIPs" in spec:
            ips = spec["clusterIPs"]
            if not isinstance(ips, list) or len(ips) != 1 or not isinstance(ips[0], str):
                self.fail("spec.clusterIPs", "must hold one address (IPv4 only)")
            elif value is not None and ips[0] != value:
                self.fail("spec.clusterIPs", "must equal [spec.clusterIP]")
            elif value is None:
                value = ips[0]
        if value is None or value == "":
            return False, ""
        text = self.string(value, "spec.clusterIP")
        if text is None:
            return False, ""
        if text == "None":
            return True, ""
        try:
            address = ipaddress.IPv4Address(text)
        except ValueError:
            self.fail("spec.clusterIP", f"{shown(text)} is not an IPv4 address or None")
            return False, ""
        return False, str(address)

    def ports(self, value: Any, headless: bool) -> tuple[ServicePortRecord, ...]:
        if not isinstance(value, list):
            self.fail("spec.ports", f"must be a list, not {type_name(value)}")
            return ()
        if not value and not headless:
            self.fail("spec.ports", "a ClusterIP service needs at least one port")
        if len(value) > MAX_PORTS:
            self.fail("spec.ports", f"has {len(value)} ports, more than the limit of {MAX_PORTS}")
            return ()
        ports: list[ServicePortRecord] = []
        names: dict[str, int] = {}
        frontends: dict[tuple[int, str], int] = {}
        for i, item in enumerate(value):
            port = self.port(item, f"spec.ports[{i}]", several=len(value) > 1)
            if port is None:
                continue
            if port.name in names:
                self.fail(f"spec.ports[{i}].name",
                          f"{shown(port.name)} is already used by spec.ports[{names[port.name]}]")
            names[port.name] = i
            if (port.port, port.protocol) in frontends:
                self.fail(f"spec.ports[{i}].port", f"{port.port}/{port.protocol} is already "
                          f"used by spec.ports[{frontends[port.port, port.protocol]}]")
            frontends[port.port, port.protocol] = i
            ports.append(port)
        return tuple(ports)

    def port(self, value: Any, path: str, several: bool) -> ServicePortRecord | None:
        spec = self.mapping(value, path, _PORT_FIELDS, {
            "nodePort": "NodePort services are not supported (ClusterIP only)",
            "appProtocol": "not supported"})
        if spec is None:
            return None
        before = len(self.violations)
        name = spec.get("name", "")
        if self.string(name, f"{path}.name") is not None:
            if name and (len(name) > 63 or not _DNS_LABEL.fullmatch(name)):
                self.fail(f"{path}.name", f"{shown(name)} is not a valid port name (lower-case "
                                          "DNS label)")
            elif not name and several:
                self.fail(f"{path}.name", "is required when a service has several ports")
        number = self.number(spec.get("port"), f"{path}.port")
        protocol = spec.get("protocol", TCP)
        if protocol == "SCTP":
            self.fail(f"{path}.protocol", "SCTP is not supported (TCP or UDP)")
        elif protocol not in (TCP, UDP):
            self.fail(f"{path}.protocol", f"must be TCP or UDP, not {shown(protocol)}")
        target, target_name = number or 0, ""
        if "targetPort" in spec:
            raw = spec["targetPort"]
            if isinstance(raw, str):
                if not is_port_name(raw):
                    self.fail(f"{path}.targetPort", f"{shown(raw)} is not a port number or a "
                                                    "port name (IANA service name)")
                target, target_name = 0, raw
            else:
                target = self.number(raw, f"{path}.targetPort") or 0
        if len(self.violations) > before or number is None:
            return None
        return ServicePortRecord(str(name), number, str(protocol), target, target_name)

    def number(self, value: Any, path: str) -> int | None:
        if value is None:
            self.fail(path, "is required")
            return None
        if type(value) is not int:
            self.fail(path, f"must be an integer, not {type_name(value)}")
            return None
        if not 1 <= value <= 65535:
            self.fail(path, f"must be 1-65535, not {value}")
            return None
        return value
