"""A parsed Service manifest: what an apply asks for, before a ClusterIP and an id are given."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.records.codec import ServicePortRecord, ServiceRecord

API_VERSION = "v1"
KIND = "Service"
DEFAULT_NAMESPACE = "default"
TCP = "TCP"
UDP = "UDP"


@dataclass(frozen=True, slots=True)
class ServiceManifest:
    """One validated Service document. `requested_ip` is spec.clusterIP ("" when the
    control plane picks one); a headless service has none."""

    namespace: str
    name: str
    headless: bool
    requested_ip: str
    ports: tuple[ServicePortRecord, ...]
    selector: tuple[str, ...]
    labels: tuple[str, ...]
    annotations: tuple[str, ...]
    client_ip_affinity: bool
    path: str = ""
    """The document's path in its file ("documents[2]"; "" when it was alone)."""

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def field(self, name: str) -> str:
        """A field's path, as validation names it."""
        return f"{self.path}.{name}" if self.path else name

    def record(self, cluster_ip: str, ident: int) -> ServiceRecord:
        """The stored form, holding `cluster_ip` and frontend id `ident`."""
        return ServiceRecord(self.namespace, self.name, cluster_ip, self.headless, ident,
                             self.ports, self.selector, self.labels, self.annotations,
                             self.client_ip_affinity)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A document of another kind in the file, left alone."""

    index: int
    api_version: str
    kind: str
    name: str

    def note(self) -> str:
        what = f"{self.kind} {self.name}".strip()
        return f"documents[{self.index}]: {what} ({self.api_version}) skipped: not a Service"


@dataclass(frozen=True, slots=True)
class ParsedFile:
    services: list[ServiceManifest]
    skipped: list[Skipped]


def selector_map(pairs: tuple[str, ...]) -> dict[str, str]:
    """A stored "key=value" list as a map."""
    return dict(pair.partition("=")[::2] for pair in pairs)
