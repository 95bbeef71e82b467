"""The replica's policy resolver: a `PolicyRepository` fed from the one etcd watch.

A ClusterCache listener registered after the identity index and before the subscription state,
so when the state handles revision R, identities and policies of R are already resolved and
`changed` names exactly the identities whose entries changed at R. Everything it holds derives
from etcd (identities, policies, CIDR identities looked up by label), so every replica
resolves the same etcd state to the same entries.
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bulkhead import log
from controlplane.identity.index import IdentityIndex
from controlplane.records.codec import IdentityRecord, RecordError, decode_policy
from controlplane.store.cache import Change
from controlplane.store.etcd import KV
from controlplane.store.keys import Keys

from .cidr import cidr_label
from .model import Identity, Policy, PolicyKey, ResolvedPolicy
from .repository import DEFAULT_POLICY_MAP_MAX, PolicyRepository, cidr_prefixes

_log = log.get(__name__)
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


@dataclass(frozen=True)
class StoredPolicy:
    policy: Policy
    kv: KV


def _timed(method: Callable[..., None]) -> Callable[..., None]:
    """Adds the method's duration to `resolution_seconds` (total, count) for the metrics."""

    @functools.wraps(method)
    def wrapper(self: PolicyResolver, *args: Any) -> None:
        started = time.perf_counter()
        try:
            method(self, *args)
        finally:
            total, count = self.resolution_seconds
            self.resolution_seconds = (total + time.perf_counter() - started, count + 1)

    return wrapper


class PolicyResolver:
    """ClusterCache listener; `resolved(id)` and `changed` are what the subscription reads."""

    def __init__(self, keys: Keys, index: IdentityIndex, *,
                 policy_map_max: int = DEFAULT_POLICY_MAP_MAX) -> None:
        self.keys = keys
        self.index = index
        self.policy_map_max = policy_map_max
        self.cidrs = IndexCidrIdentities(index)
        self.repository = self._new_repository()
        self.stored: dict[PolicyKey, StoredPolicy] = {}
        self._key_of: dict[str, PolicyKey] = {}  # etcd key -> policy
        self.waiting: set[PolicyKey] = set()
        """Stored policies held back because a CIDR identity they need is not in etcd."""
        self.revision = 0
        self._affected: OrderedDict[int, frozenset[int]] = OrderedDict()
        self.resolution_seconds: tuple[float, int] = (0.0, 0)

    def _new_repository(self) -> PolicyRepository:
        return PolicyRepository(self.cidrs, policy_map_max=self.policy_map_max)

    # -- what the subscription layer reads ----------------------------------------------------
    @property
    def changed(self) -> set[int]:
        return self.repository.changed

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

    # -- ClusterCache listener ----------------------------------------------------------------
    @_timed
    def reset(self, items: dict[str, KV], revision: int) -> None:
        """Rebuilds from scratch; the subscription layer resends from its own reset."""
        self.repository = self._new_repository()
        self.stored.clear()
        self._key_of.clear()
        self.waiting.clear()
        self._affected.clear()
        self.revision = revision
        identities = [kv for key, kv in items.items() if key.startswith(self.keys.identity_ids)]
        policies = [kv for key, kv in items.items() if key.startswith(self.keys.policies)]
        for kv in sorted(identities, key=lambda kv: kv.key):
            identity = self._identity(kv)
            if identity is not None:
                self.repository.add_identity(identity)
        upserts = []
        for kv in sorted(policies, key=lambda kv: kv.key):
            policy = self._policy(kv)
            if policy is not None:
                self.stored[policy.key] = StoredPolicy(policy, kv)
                self._key_of[kv.key] = policy.key
                upserts.append(policy)
        self._apply_policies(upserts, [])
        self.repository.changed.clear()
        _log.info("policies resolved", policies=len(self.stored), waiting=len(self.waiting),
                  revision=revision)

    @_timed
    def apply(self, revision: int, changes: list[Change]) -> None:
        before = set(self.repository.changed)
        self.repository.changed.clear()
        added: list[Identity] = []
        removed: list[int] = []
        upserts: list[Policy] = []
        deletes: list[PolicyKey] = []
        for change in changes:
            if change.key.startswith(self.keys.identity_ids):
                identity = self._identity(change.kv) if change.kv is not None else None
                if identity is not None:
                    added.append(identity)
                elif change.prev is not None:
                    removed.append(int(change.key[len(self.keys.identity_ids):]))
            elif change.key.startswith(self.keys.policies):
                self._policy_change(change, upserts, deletes)
        for identity in added:
            self.repository.add_identity(identity)
        if added and self.waiting:
            # A CIDR identity a held-back policy needed may have arrived.
            upserting = {p.key for p in upserts}
            upserts += [self.stored[k].policy for k in sorted(self.waiting)
                        if k not in upserting]
        if upserts or deletes:
            self._apply_policies(upserts, deletes)
        for ident in removed:
            self.repository.remove_identity(ident)
        self.revision = revision
        affected = frozenset(self.repository.changed)
        self.repository.changed |= before
        if affected:
            self._affected[revision] = affected
            while len(self._affected) > AFFECTED_KEPT:
                self._affected.popitem(last=False)

    # -- internals ----------------------------------------------------------------------------
    def _policy_change(self, change: Change, upserts: list[Policy],
                       deletes: list[PolicyKey]) -> None:
        old = self._key_of.pop(change.key, None)
        new = self._policy(change.kv) if change.kv is not None else None
        if old is not None and (new is None or new.key != old):
            self.stored.pop(old, None)
            deletes.append(old)
        if new is not None and change.kv is not None:
            self._key_of[change.key] = new.key
            self.stored[new.key] = StoredPolicy(new, change.kv)
            upserts.append(new)

    def _apply_policies(self, upserts: list[Policy], deletes: list[PolicyKey]) -> None:
        ready: list[Policy] = []
        for policy in upserts:
            missing = [p for p in cidr_prefixes(policy) if self.cidrs.lookup(p) is None]
            if missing:
                # Only when etcd was written around the API (or the identity released by
                # hand): the policy waits for its CIDR identities rather than resolving to
                # made-up numbers.
                if policy.key not in self.waiting:
                    _log.warning("policy waits for CIDR identities", policy=str(policy.key),
                                 prefixes=missing)
                self.waiting.add(policy.key)
                deletes.append(policy.key)
            else:
                self.waiting.discard(policy.key)
                ready.append(policy)
        for key in deletes:
            if key not in self.stored:
                self.waiting.discard(key)
        self.repository.apply(ready, [k for k in deletes
                                      if self.repository.get_policy(k) is not None],
                              check=False)

    def _identity(self, kv: KV) -> Identity | None:
        try:
            record = IdentityRecord.decode(kv.value)
            return Identity.of(record.id, record.labels)
        except RecordError:
            _log.warning("unreadable identity record", key=kv.key)
            return None

    def _policy(self, kv: KV) -> Policy | None:
        try:
            return decode_policy(kv.value)
        except RecordError as exc:
            _log.warning("unreadable stored policy ignored", key=kv.key, error=str(exc)[:300])
            return None
