"""Service backends, derived on every replica from the cache (never stored): the endpoints in
a service's namespace whose labels match its selector.

The revision pipeline's service stage (`controlplane/pipeline.py`): `apply` returns the
services ("namespace/name") whose content or backends changed at a revision, so the
subscription re-sends exactly those. A selector key matches an endpoint's `k8s:` label of the
same key and value, as Kubernetes matches pod labels; a service without a selector has no
backends (Kubernetes leaves its endpoints to be written by hand). A node lost takes its
endpoints with it (they carry its lease), and so their backends.
"""

from __future__ import annotations

from collections.abc import Iterable

from bulkhead import log
from bulkhead.v1 import types_pb2
from controlplane.records import messages
from controlplane.records.codec import Endpoint, RecordError, ServiceRecord
from controlplane.store.cache import Change
from controlplane.store.etcd import KV
from controlplane.store.keys import Keys

from .globals import RemoteBackend, RemoteServices, is_global, is_shared, pick

_log = log.get(__name__)


def selects(service: ServiceRecord, endpoint: Endpoint) -> bool:
    """Whether the service's selector matches the endpoint (same namespace, every pair)."""
    if not service.selector or service.namespace != endpoint.namespace:
        return False
    labels = endpoint.labels
    return all(f"k8s:{pair}" in labels for pair in service.selector)


class ServiceIndex:
    """Services and the endpoints of their namespaces, at the cache's revision."""

    def __init__(self, keys: Keys) -> None:
        self.services_prefix = keys.services
        self.endpoints_prefix = keys.endpoints
        self.mirrors_prefix = keys.mesh_mirrors
        self.remotes: dict[str, RemoteServices] = {}
        """Remote cluster -> its mirrored services and endpoints (global services)."""
        self.services: dict[str, ServiceRecord] = {}
        self.endpoints: dict[str, dict[str, Endpoint]] = {}
        """namespace -> endpoint key -> endpoint."""
        self.in_namespace: dict[str, set[str]] = {}
        """namespace -> its services, so an endpoint change looks at its namespace only."""
        self._backends: dict[str, list[Endpoint]] = {}
        """Computed backends by service, dropped when the service changes."""
        self.revision = 0

    # -- revision pipeline stage ------------------------------------------------------------
    def reset(self, items: dict[str, KV], revision: int) -> None:
        self.services.clear()
        self.endpoints.clear()
        self.in_namespace.clear()
        self._backends.clear()
        self.remotes.clear()
        for key, kv in items.items():
            self._take(key, kv, None)
        self.revision = revision

    def apply(self, revision: int, changes: list[Change]) -> set[str]:
        """The services whose record or backends changed at `revision`."""
        changed: set[str] = set()
        for change in changes:
            self._take(change.key, change.kv if change.kind == "put" else None, changed)
        for ref in changed:
            self._backends.pop(ref, None)
        self.revision = revision
        return changed

    # -- queries ----------------------------------------------------------------------------
    def backends(self, service: ServiceRecord) -> list[Endpoint]:
        """The endpoints the service selects, by name."""
        found = self._backends.get(service.ref)
        if found is None:
            endpoints = self.endpoints.get(service.namespace, {})
            found = sorted((e for e in endpoints.values() if selects(service, e)),
                           key=lambda e: e.name)
            if self.services.get(service.ref) is service:
                self._backends[service.ref] = found
        return found

    def all(self) -> Iterable[ServiceRecord]:
        return (self.services[ref] for ref in sorted(self.services))

    def refs(self) -> list[str]:
        return sorted(self.services)

    def remote_backends(self, service: ServiceRecord) -> list[RemoteBackend]:
        """A global service's backends in connected remote clusters that share theirs: the
        endpoints their service of the same namespace and name selects (by cluster, name)."""
        if not is_global(service):
            return []
        found: list[RemoteBackend] = []
        for cluster in sorted(self.remotes):
            remote = self.remotes[cluster]
            theirs = remote.services.get(service.ref)
            if theirs is None or not is_shared(theirs):
                continue
            endpoints = remote.endpoints.get(service.namespace, {}).values()
            found.extend(RemoteBackend(cluster, e)
                         for e in sorted(endpoints, key=lambda e: e.name) if selects(theirs, e))
        return found

    def message(self, ref: str) -> types_pb2.Service | None:
        """The service with its backends as agents and the admin API see it: a global
        service's remote backends carry their cluster (and their node as `<cluster>/<node>`,
        as agents know it), after the service's affinity."""
        service = self.services.get(ref)
        if service is None:
            return None
        local, remote = pick(service, self.backends(service), self.remote_backends(service))
        out = messages.service(service, local)
        for cluster in dict.fromkeys(b.cluster for b in remote):
            theirs = self.remotes[cluster].services[ref]   # their ports resolve their targets
            for b in messages.service(theirs, [r.endpoint for r in remote
                                               if r.cluster == cluster]).backends:
                b.node = f"{cluster}/{b.node}"
                b.cluster = cluster
                out.backends.append(b)
        return out

    def counts(self) -> tuple[int, int]:
        """(services, backends) for status and metrics (a global service's remote backends
        included)."""
        backends = 0
        for ref in self.services:
            found = self.message(ref)
            backends += len(found.backends) if found is not None else 0
        return len(self.services), backends

    # -- internals --------------------------------------------------------------------------
    def _take(self, key: str, kv: KV | None, changed: set[str] | None) -> None:
        if key.startswith(self.mirrors_prefix):
            self._take_remote(key, kv, changed)
        elif key.startswith(self.services_prefix):
            ref = key[len(self.services_prefix):]
            namespace = ref.partition("/")[0]
            self.services.pop(ref, None)
            self._backends.pop(ref, None)
            if kv is not None:
                try:
                    self.services[ref] = ServiceRecord.of_kv(kv)
                except RecordError:   # the cache keeps undecodable records out already
                    _log.warning("unreadable service record", key=key)
            if ref in self.services:
                self.in_namespace.setdefault(namespace, set()).add(ref)
            elif (refs := self.in_namespace.get(namespace)) is not None:
                refs.discard(ref)
                if not refs:
                    del self.in_namespace[namespace]
            if changed is not None:
                changed.add(ref)
        elif key.startswith(self.endpoints_prefix):
            namespace = key[len(self.endpoints_prefix):].partition("/")[0]
            found = self.endpoints.setdefault(namespace, {})
            old = found.pop(key, None)
            new = None
            if kv is not None:
                try:
                    new = found[key] = Endpoint.of_kv(kv)
                except RecordError:
                    _log.warning("unreadable endpoint record", key=key)
            if not found:
                self.endpoints.pop(namespace, None)
            if old == new:
                return
            for ref in self.in_namespace.get(namespace, ()):
                service = self.services[ref]
                if ((old is not None and selects(service, old))
                        or (new is not None and selects(service, new))):
                    self._backends.pop(ref, None)
                    if changed is not None:
                        changed.add(ref)

    def _take_remote(self, key: str, kv: KV | None, changed: set[str] | None) -> None:
        """A mirrored service or endpoint of a remote cluster: the local services of the same
        namespace/name (services) or namespace (endpoints) may change backends."""
        cluster, _, rest = key[len(self.mirrors_prefix):].partition("/")
        kind, _, ref = rest.partition("/")
        if kind not in ("services", "endpoints"):
            return
        remote = self.remotes.setdefault(cluster, RemoteServices())
        affected: set[str] = set()
        try:
            if kind == "services":
                old_service = remote.services.pop(ref, None)
                if kv is not None:
                    remote.services[ref] = ServiceRecord.of_kv(kv)
                if old_service is not None or kv is not None:
                    affected.add(ref)
            else:
                namespace = ref.partition("/")[0]
                found = remote.endpoints.setdefault(namespace, {})
                old = found.pop(ref, None)
                new = Endpoint.of_kv(kv) if kv is not None else None
                if new is not None:
                    found[ref] = new
                if not found:
                    remote.endpoints.pop(namespace, None)
                if old != new:
                    affected.update(
                        r for r, theirs in remote.services.items()
                        if (old is not None and selects(theirs, old))
                        or (new is not None and selects(theirs, new)))
        except RecordError:
            _log.warning("unreadable mirrored record", key=key)
        if not remote.services and not remote.endpoints:
            self.remotes.pop(cluster, None)
        if changed is not None:
            changed.update(r for r in affected if r in self.services)
