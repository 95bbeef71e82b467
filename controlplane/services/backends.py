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

    def message(self, ref: str) -> types_pb2.Service | None:
        """The service with its backends as agents and the admin API see it."""
        service = self.services.get(ref)
        return None if service is None else messages.service(service, self.backends(service))

    def counts(self) -> tuple[int, int]:
        """(services, backends) for status and metrics."""
        backends = 0
        for service in self.services.values():
            found = self.backends(service)
            backends += sum(1 for p in service.ports for e in found
                            if messages.target_port(p, e))
        return len(self.services), backends

    # -- internals --------------------------------------------------------------------------
    def _take(self, key: str, kv: KV | None, changed: set[str] | None) -> None:
        if key.startswith(self.services_prefix):
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
