"""The replica's policy resolver: a `PolicyRepository` fed from the one etcd watch.

The policy stage of the revision pipeline (`controlplane/pipeline.py`): `apply` resolves one
revision and returns the identities whose entries changed at it. Everything it holds derives
from etcd (identities, policies, CIDR identities looked up by label), so every replica
resolves the same etcd state to the same entries. The policy store reads it only through the
narrow API below (`check`, `rules`, `cidr_of`, `stored`, `waits`, `affected_between`).
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from bulkhead import log
from controlplane.identity.index import IdentityIndex
from controlplane.policy.cidr import cidr_label
from controlplane.policy.counted import adjust
from controlplane.policy.labels import ParsedLabels
from controlplane.policy.model import (
    Identity,
    NamedPorts,
    Policy,
    PolicyKey,
    ResolvedPolicy,
    Rule,
)
from controlplane.policy.repository import (
    DEFAULT_POLICY_MAP_MAX,
    Overflow,
    PolicyRepository,
    cidr_prefixes,
)
from controlplane.policy.services import ServiceInfo, expand, uses_services
from controlplane.records.codec import (
    Endpoint,
    IdentityRecord,
    RecordError,
    ServiceRecord,
    policy_of_kv,
)
from controlplane.store.cache import Change
from controlplane.store.etcd import KV
from controlplane.store.keys import Keys

_log = log.get(__name__)
_PROTOCOLS = {"TCP": 6, "UDP": 17}
AFFECTED_KEPT = 4096
"""Revisions whose affected identities are remembered (for an apply's answer)."""


class MissingCidrIdentity(LookupError):
    pass


class IndexCidrIdentities:
    """`CidrIdentities` over the identity index. The policy store allocates a prefix's
    identity (in etcd) before it stores the policy, so resolution only looks it up; the
    resolver never hands the repository a policy whose prefixes are not in the index."""

    def __init__(self, index: IdentityIndex) -> None:
        self.index = index

    def lookup(self, prefix: str) -> int | None:
        return self.index.by_labels.get(cidr_label(prefix))

    def ensure(self, prefix: str) -> int:
        ident = self.lookup(prefix)
        if ident is None:
            raise MissingCidrIdentity(prefix)
        return ident

    def release(self, prefix: str) -> None:
        """References live in etcd (the store deletes them with the policy)."""


class Services(Protocol):
    """The replica's services at the revision being resolved (the service stage's index,
    which the pipeline runs before this stage)."""

    services: dict[str, ServiceRecord]


def _info(record: ServiceRecord) -> ServiceInfo:
    return ServiceInfo(record.namespace, record.name, tuple(record.labels),
                       tuple(record.selector))


@dataclass(frozen=True)
class StoredPolicy:
    policy: Policy
    kv: KV


_R = TypeVar("_R")


def _timed(method: Callable[..., _R]) -> Callable[..., _R]:
    """Adds the method's duration to `resolution_seconds` (total, count) for the metrics."""

    @functools.wraps(method)
    def wrapper(self: PolicyResolver, *args: Any) -> _R:
        started = time.perf_counter()
        try:
            return method(self, *args)
        finally:
            total, count = self.resolution_seconds
            self.resolution_seconds = (total + time.perf_counter() - started, count + 1)

    return wrapper


class PolicyResolver:
    """Identities and policies of each revision in, resolved policies and change sets out."""

    def __init__(self, keys: Keys, index: IdentityIndex, *,
                 policy_map_max: int = DEFAULT_POLICY_MAP_MAX,
                 services: Services | None = None, local_cluster: str = "") -> None:
        self.keys = keys
        self.local_cluster = local_cluster
        """`--policy-default-local-cluster`: this cluster's name, else "" (off)."""
        self.index = index
        self.services = services
        self._service_view: dict[str, ServiceInfo] = {}
        """What `toServices` rules were last expanded against (ref -> service)."""
        self._endpoint_ports: dict[str, tuple[int, tuple[tuple[str, int, int], ...]]] = {}
        """endpoint key -> (its identity, its named ports as (name, protocol, number))"""
        self._identity_ports: dict[int, dict[tuple[str, int, int], int]] = {}
        """identity -> named port -> how many of its endpoints serve it"""
        self.policy_map_max = policy_map_max
        self._cidrs = IndexCidrIdentities(index)
        self.repository = self._new_repository()
        """The pure engine state; the policy store reads only the API below."""
        self._stored: dict[PolicyKey, StoredPolicy] = {}
        self._key_of: dict[str, PolicyKey] = {}  # etcd key -> policy
        self._waiting: set[PolicyKey] = set()
        """Stored policies held back because a CIDR identity they need is not in etcd."""
        self.revision = 0
        self._affected: OrderedDict[int, frozenset[int]] = OrderedDict()
        self.resolution_seconds: tuple[float, int] = (0.0, 0)

    def _new_repository(self) -> PolicyRepository:
        return PolicyRepository(self._cidrs, policy_map_max=self.policy_map_max,
                                local_cluster=self.local_cluster)

    # -- what the subscription, the admin API and the policy store read -----------------------
    def resolved(self, identity: int, *, origins: bool = False) -> ResolvedPolicy:
        return self.repository.resolved(identity, origins=origins)

    def enforcement(self, identity: int) -> tuple[bool, bool]:
        """(ingress enforced, egress enforced) of `identity`, without resolving its entries."""
        return self.repository.enforcement(identity)

    def affected_between(self, after: int, upto: int) -> set[int]:
        """Identities whose entries changed in revisions (after, upto]."""
        found: set[int] = set()
        for revision, idents in reversed(self._affected.items()):
            if revision <= after:
                break
            if revision <= upto:
                found |= idents
        return found

    def check(self, upserts: Iterable[Policy]) -> list[Overflow]:
        """The identities storing `upserts` would push above the policy map size."""
        return self.repository.check([self._expand(p) for p in upserts])

    def rules(self) -> Iterator[Rule]:
        """Every rule of the resolved policies (what `trace` evaluates)."""
        return self.repository.rules()

    def proposed_rules(self, upserts: Iterable[Policy], deletes: Iterable[PolicyKey]
                       ) -> list[Rule]:
        """The rules `rules()` would give after storing `upserts` and deleting `deletes`
        (toServices expanded as for stored policies); nothing changes here."""
        upserts = [self._expand(p) for p in upserts]
        gone = {p.key for p in upserts} | set(deletes)
        return ([r for r in self.repository.rules() if r.ref.policy not in gone]
                + [r for p in upserts for r in p.rules])

    def identity_labels(self) -> Mapping[int, ParsedLabels]:
        """Every identity's labels, as resolution sees them (host policies' peers)."""
        return self.repository.identity_labels()

    def named_ports(self, identity: int | None = None) -> NamedPorts:
        """The named ports of an identity's endpoints (None: of every endpoint)."""
        return self.repository.named_ports(identity)

    def cidr_of(self, prefix: str) -> int | None:
        """The CIDR identity of `prefix` in the identity index, if it has one."""
        return self._cidrs.lookup(prefix)

    def stored(self, key: PolicyKey) -> StoredPolicy | None:
        """The policy `key` as last seen in etcd (parsed), whether resolved or waiting."""
        return self._stored.get(key)

    def policy_count(self) -> int:
        return len(self._stored)

    def waits(self, key: PolicyKey) -> bool:
        """Whether stored policy `key` is held back because a CIDR identity it needs is not
        in etcd (only when etcd was written around the API)."""
        return key in self._waiting

    # -- the revision pipeline's policy stage -------------------------------------------------
    @_timed
    def reset(self, items: dict[str, KV], revision: int) -> None:
        """Rebuilds from scratch; the subscription resends everything from its own reset."""
        self.repository = self._new_repository()
        self._stored.clear()
        self._key_of.clear()
        self._waiting.clear()
        self._affected.clear()
        self._service_view = self._current_services()
        self._endpoint_ports.clear()
        self._identity_ports.clear()
        self.revision = revision
        identities = [kv for key, kv in items.items() if self.keys.is_identity(key)]
        policies = [kv for key, kv in items.items() if key.startswith(self.keys.policies)]
        for kv in sorted(identities, key=lambda kv: kv.key):
            identity = self._identity(kv)
            if identity is not None:
                self.repository.add_identity(identity)
        upserts = []
        for kv in sorted(policies, key=lambda kv: kv.key):
            policy = self._policy(kv)
            if policy is not None:
                self._stored[policy.key] = StoredPolicy(policy, kv)
                self._key_of[kv.key] = policy.key
                upserts.append(policy)
        touched: set[int] = set()
        for key, kv in sorted(items.items()):
            if key.startswith(self.keys.endpoints):
                self._endpoint_change(key, kv, touched)
        self._named_ports(touched)
        self._apply_policies(upserts, [])
        _log.info("policies resolved", policies=len(self._stored), waiting=len(self._waiting),
                  revision=revision)

    @_timed
    def apply(self, revision: int, changes: list[Change],
              services_changed: Set[str] = frozenset()) -> frozenset[int]:
        """Resolves revision `revision`; returns the identities whose policy changed at it.
        `services_changed`: the services the service stage saw change at it."""
        changed: set[int] = set()
        added: list[Identity] = []
        removed: list[int] = []
        upserts: list[Policy] = []
        deletes: list[PolicyKey] = []
        ports_touched: set[int] = set()
        for change in changes:
            if change.key.startswith(self.keys.endpoints):
                self._endpoint_change(change.key, change.kv, ports_touched)
            elif self.keys.is_identity(change.key):   # local, or a remote cluster's mirrored
                identity = self._identity(change.kv) if change.kv is not None else None
                if identity is not None:
                    added.append(identity)
                elif change.prev is not None:
                    removed.append(int(change.key.rsplit("/", 1)[1]))
            elif change.key.startswith(self.keys.policies):
                self._policy_change(change, upserts, deletes)
        for identity in added:
            changed |= self.repository.add_identity(identity)
        if added and self._waiting:
            # A CIDR identity a held-back policy needed may have arrived.
            upserting = {p.key for p in upserts}
            upserts += [self._stored[k].policy for k in sorted(self._waiting)
                        if k not in upserting]
        if services_changed and self._services_moved(services_changed):
            upserting = {p.key for p in upserts} | set(deletes)
            upserts += [stored.policy for key, stored in sorted(self._stored.items())
                        if key not in upserting and key not in self._waiting
                        and uses_services(stored.policy)]
        if upserts or deletes:
            changed |= self._apply_policies(upserts, deletes)
        if ports_touched:
            changed |= self._named_ports(ports_touched)
        for ident in removed:
            changed |= self.repository.remove_identity(ident)
        self.revision = revision
        affected = frozenset(changed)
        if affected:
            self._affected[revision] = affected
            while len(self._affected) > AFFECTED_KEPT:
                self._affected.popitem(last=False)
        return affected

    # -- internals ----------------------------------------------------------------------------
    def _endpoint_change(self, key: str, kv: KV | None, touched: set[int]) -> None:
        """An endpoint record put (kv) or deleted (None): its identity's named ports."""
        old = self._endpoint_ports.pop(key, None)
        new = None
        if kv is not None:
            try:
                endpoint = Endpoint.of_kv(kv)
            except RecordError:
                endpoint = None
            if endpoint is not None:
                named = tuple((p.name, _PROTOCOLS.get(p.protocol, 0), p.port)
                              for p in endpoint.ports if p.name)
                new = (endpoint.identity, named)
        if old == new:
            if new is not None:
                self._endpoint_ports[key] = new
            return
        for sign, found in ((-1, old), (1, new)):
            if found is None or not found[1]:
                continue
            ident, named_ports = found
            counts = self._identity_ports.setdefault(ident, {})
            for port in named_ports:
                adjust(counts, port, sign)
            if not counts:
                del self._identity_ports[ident]
            touched.add(ident)
        if new is not None:
            self._endpoint_ports[key] = new

    def _named_ports(self, identities: set[int]) -> set[int]:
        changed: set[int] = set()
        for ident in sorted(identities):
            named: dict[str, set[tuple[int, int]]] = {}
            for name, protocol, number in self._identity_ports.get(ident, {}):
                named.setdefault(name, set()).add((protocol, number))
            changed |= self.repository.set_named_ports(
                ident, {name: frozenset(pairs) for name, pairs in named.items()})
        return changed

    def _current_services(self) -> dict[str, ServiceInfo]:
        if self.services is None:
            return {}
        return {ref: _info(record) for ref, record in self.services.services.items()}

    def _services_moved(self, refs: Set[str]) -> bool:
        """Whether a changed service differs in what `toServices` rules read (name, labels,
        selector): backends coming and going need nothing, their identities follow."""
        current = self.services.services if self.services is not None else {}
        moved = False
        for ref in refs:
            record = current.get(ref)
            info = _info(record) if record is not None else None
            if info != self._service_view.get(ref):
                moved = True
                if info is None:
                    self._service_view.pop(ref, None)
                else:
                    self._service_view[ref] = info
        return moved

    def _expand(self, policy: Policy) -> Policy:
        return expand(policy, self._service_view.values())

    def _policy_change(self, change: Change, upserts: list[Policy],
                       deletes: list[PolicyKey]) -> None:
        old = self._key_of.pop(change.key, None)
        new = self._policy(change.kv) if change.kv is not None else None
        if old is not None and (new is None or new.key != old):
            self._stored.pop(old, None)
            deletes.append(old)
        if new is not None and change.kv is not None:
            self._key_of[change.key] = new.key
            self._stored[new.key] = StoredPolicy(new, change.kv)
            upserts.append(new)

    def _apply_policies(self, upserts: list[Policy], deletes: list[PolicyKey]) -> frozenset[int]:
        ready: list[Policy] = []
        for policy in upserts:
            missing = [p for p in cidr_prefixes(policy) if self._cidrs.lookup(p) is None]
            if missing:
                # Only when etcd was written around the API (or the identity released by
                # hand): the policy waits for its CIDR identities rather than resolving to
                # made-up numbers.
                if policy.key not in self._waiting:
                    _log.warning("policy waits for CIDR identities", policy=str(policy.key),
                                 prefixes=missing)
                self._waiting.add(policy.key)
                deletes.append(policy.key)
            else:
                self._waiting.discard(policy.key)
                ready.append(self._expand(policy))
        for key in deletes:
            if key not in self._stored:
                self._waiting.discard(key)
        return self.repository.apply(ready, [k for k in deletes
                                             if self.repository.get_policy(k) is not None],
                                     check=False)

    def _identity(self, kv: KV) -> Identity | None:
        try:
            record = IdentityRecord.of_kv(kv)
            return Identity.of(record.id, record.labels)
        except RecordError:
            _log.warning("unreadable identity record", key=kv.key)
            return None

    def _policy(self, kv: KV) -> Policy | None:
        try:
            return policy_of_kv(kv)
        except RecordError as exc:
            _log.warning("unreadable stored policy ignored", key=kv.key, error=str(exc)[:300])
            return None
