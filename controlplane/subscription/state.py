"""The subscribable state at the cache's revision, turned into one RevisionDelta per etcd
revision. Shared objects are kept serialized (a snapshot is then a concatenation); interest
(which identities have endpoints on which node) decides who gets which policy."""

from __future__ import annotations

import time
from collections.abc import Callable, Set
from typing import Protocol

from bulkhead import log
from bulkhead.v1 import subscription_pb2 as pb
from bulkhead.v1 import types_pb2
from controlplane.policy.hosts import HostPolicy
from controlplane.records.codec import Endpoint, RecordError
from controlplane.store.cache import Change
from controlplane.store.etcd import KV
from controlplane.store.keys import Keys

from . import content, framing, trace
from .history import History, RevisionDelta
from .policy import PolicySource

_log = log.get(__name__)
SERVICE_OBJECT = "service:"
"""Services are shared objects without a key of their own (their backends are derived):
`objects` holds each under "service:<namespace>/<name>"."""


class ServiceSource(Protocol):
    """The services every agent receives, each with its current backends."""

    def refs(self) -> list[str]: ...

    def message(self, ref: str) -> types_pb2.Service | None: ...


class HostSource(Protocol):
    """Each node's resolved host policy (controlplane/policystore/hoststage.py)."""

    def policy(self, node: str) -> HostPolicy | None: ...


class NoServices:
    def refs(self) -> list[str]:
        return []

    def message(self, ref: str) -> types_pb2.Service | None:
        return None


class SubscriptionState:
    """The subscription stage of the revision pipeline (`controlplane/pipeline.py`): it gets
    each revision's changes together with the identities whose policy changed at it."""

    def __init__(self, keys: Keys, policy: PolicySource, history: History,
                 services: ServiceSource | None = None,
                 host_policies: HostSource | None = None) -> None:
        self.keys = keys
        self.policy = policy
        self.host_policies = host_policies
        """None: host policies are not sent (replicas built without the host stage)."""
        self.services: ServiceSource = services or NoServices()
        self.history = history
        self.classify = content.Classifier(keys)
        self.objects: dict[str, bytes] = {}            # cache key -> framed Change (a put)
        self.endpoint_of: dict[str, tuple[str, int]] = {}  # endpoint key -> (node, identity)
        self.interest: dict[str, dict[int, int]] = {}  # node -> identity -> endpoints
        self.hosts: dict[int, set[str]] = {}           # identity -> nodes hosting it
        self.revision = 0
        self.shared_revision = 0       # last revision that changed shared objects
        self.generation = 0            # bumps on every relist
        self._policy_framed: dict[int, bytes] = {}
        self._host_framed: dict[str, bytes] = {}       # node -> framed host policy
        self.on_delta: list[Callable[[RevisionDelta], None]] = []
        self.on_reset: list[Callable[[], None]] = []

    # -- revision pipeline stage ------------------------------------------------------------
    def reset(self, items: dict[str, KV], revision: int) -> None:
        self.objects.clear()
        self.endpoint_of.clear()
        self.interest.clear()
        self.hosts.clear()
        self._policy_framed.clear()
        self._host_framed.clear()
        for key, kv in items.items():
            kind = self.classify.kind(key)
            if kind is not None:
                self.objects[key] = self._framed_put(kind, kv)
            elif key.startswith(self.classify.endpoints):
                self._endpoint_put(key, kv, None)
        for ref in self.services.refs():
            self._service(ref)
        self.revision = self.shared_revision = revision
        self.generation += 1
        self.history.restart(revision)
        for callback in self.on_reset:
            callback()

    def apply(self, revision: int, changes: list[Change], policy_changed: Set[int],
              services_changed: Set[str] = frozenset(),
              hosts_changed: Set[str] = frozenset()) -> None:
        if trace.TRACER is not None:
            trace.TRACER.watched[revision] = time.time()
        framed: list[bytes] = []
        touched: dict[tuple[str, int], bool] = {}   # (node, identity) -> hosted before
        for change in changes:
            kind = self.classify.kind(change.key)
            if kind is not None:
                if change.kind == "put" and change.kv is not None:
                    put = self._framed_put(kind, change.kv)
                    if kind == "remote" and self.objects.get(change.key) == put:
                        continue   # a syncer's progress write: nothing agents see changed
                    self.objects[change.key] = put
                    framed.append(put)
                elif change.prev is not None:
                    self.objects.pop(change.key, None)
                    framed.append(framing.change_field(
                        content.delete_change(kind, change.prev).SerializeToString()))
            elif change.key.startswith(self.classify.endpoints):
                self._endpoint_put(change.key, change.kv if change.kind == "put" else None,
                                   touched)
        for ref in sorted(services_changed):
            service = self._service(ref)
            if service is not None:
                framed.append(service)
            elif self.objects.pop(SERVICE_OBJECT + ref, None) is not None:
                framed.append(framing.change_field(
                    pb.Change(service_removed=ref).SerializeToString()))
        per_node = self._policy_parts(touched, policy_changed)
        for node in sorted(hosts_changed):   # only the node a host policy concerns gets it
            self._host_framed.pop(node, None)
            if self.host_policies is not None:
                per_node.setdefault(node, []).append(self.host_object(node))
        self.revision = revision
        if not framed and not per_node:
            return
        if framed:
            self.shared_revision = revision
        shared = framing.delta_body(revision, framed)
        delta = RevisionDelta(revision, shared, len(framed),
                              {node: b"".join(parts) for node, parts in per_node.items()})
        if framed:
            delta.entry = framing.batch_entry(shared)
        self.history.append(delta)
        for callback in self.on_delta:
            callback(delta)

    def progress(self, revision: int) -> None:
        self.revision = max(self.revision, revision)

    # -- queries -----------------------------------------------------------------------------
    def nodes_hosting(self, identities: set[int]) -> set[str]:
        found: set[str] = set()
        for ident in identities:
            found |= self.hosts.get(ident, set())
        return found

    def policy_objects(self, node: str) -> list[bytes]:
        """Framed policy puts for every identity with endpoints on `node`."""
        return [self._policy(ident) for ident in sorted(self.interest.get(node, {}))]

    def host_object(self, node: str) -> bytes:
        """`node`'s framed host policy (an empty one when no host rule selects it)."""
        framed = self._host_framed.get(node)
        if framed is None:
            policy = self.host_policies.policy(node) if self.host_policies else None
            framed = self._host_framed[node] = framing.change_field(
                content.host_policy_change(node, policy).SerializeToString())
        return framed

    def node_objects(self, node: str) -> list[bytes]:
        """What a snapshot holds for `node` alone: its policies and its host policy."""
        host = [self.host_object(node)] if self.host_policies is not None else []
        return self.policy_objects(node) + host

    # -- internals ---------------------------------------------------------------------------
    @staticmethod
    def _framed_put(kind: content.Kind, kv: KV) -> bytes:
        return framing.change_field(content.put_change(kind, kv).SerializeToString())

    def _service(self, ref: str) -> bytes | None:
        """Frames the service's put into `objects`; None when there is no such service."""
        message = self.services.message(ref)
        if message is None:
            return None
        framed = self.objects[SERVICE_OBJECT + ref] = framing.change_field(
            pb.Change(service=message).SerializeToString())
        return framed

    def _policy(self, ident: int) -> bytes:
        framed = self._policy_framed.get(ident)
        if framed is None:
            change = content.policy_change(ident, self.policy.entries_for(ident))
            framed = self._policy_framed[ident] = framing.change_field(
                change.SerializeToString())
        return framed

    def _endpoint_put(self, key: str, kv: KV | None,
                      touched: dict[tuple[str, int], bool] | None) -> None:
        old = self.endpoint_of.pop(key, None)
        if old is not None:
            self._host(old, -1, touched)
        if kv is not None:
            try:
                endpoint = Endpoint.of_kv(kv)
            except RecordError:
                _log.warning("unreadable endpoint record", key=key)
                return
            new = (endpoint.node, endpoint.identity)
            self.endpoint_of[key] = new
            self._host(new, 1, touched)

    def _host(self, pair: tuple[str, int], sign: int,
              touched: dict[tuple[str, int], bool] | None) -> None:
        node, ident = pair
        counts = self.interest.setdefault(node, {})
        before = counts.get(ident, 0)
        if touched is not None and pair not in touched:
            touched[pair] = before > 0
        after = before + sign
        if after > 0:
            counts[ident] = after
            self.hosts.setdefault(ident, set()).add(node)
        else:
            counts.pop(ident, None)
            if not counts:
                self.interest.pop(node, None)
            nodes = self.hosts.get(ident)
            if nodes is not None:
                nodes.discard(node)
                if not nodes:
                    del self.hosts[ident]

    def _policy_parts(self, touched: dict[tuple[str, int], bool],
                      changed: Set[int]) -> dict[str, list[bytes]]:
        """Per node: changed policies of hosted identities, new interests, lost interests."""
        parts: dict[str, list[bytes]] = {}
        previous = {ident: self._policy_framed.pop(ident, None) for ident in changed}
        for ident in sorted(changed):
            nodes = sorted(self.hosts.get(ident, ()))
            if not nodes:
                continue
            framed = self._policy(ident)
            if framed == previous[ident]:
                continue  # e.g. an L7 rule that the entry's union already had: no delta
            for node in nodes:
                parts.setdefault(node, []).append(framed)
        for (node, ident), before in sorted(touched.items()):
            now = ident in self.interest.get(node, {})
            if now and not before and ident not in changed:
                parts.setdefault(node, []).append(self._policy(ident))
            elif before and not now:
                parts.setdefault(node, []).append(framing.change_field(
                    content.policy_removed(ident).SerializeToString()))
        return parts

