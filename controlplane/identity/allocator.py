"""Identity allocation without locks: one etcd transaction creates the label index key and the id
key only if both are absent; a lost race re-reads and returns the winner's id or tries another id.

References are keys under identities/refs/<id>/<holder>; an endpoint's reference is bound to its
node's lease, so a vanished node releases its identities by itself.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from bulkhead.errors import (
    BulkheadError,
    Conflict,
    Exhausted,
    FailedPrecondition,
    FieldViolation,
    Invalid,
    NotFound,
)
from bulkhead.reserved import RESERVED_BY_ID
from controlplane.records.codec import (
    IdentityLabelsRecord,
    IdentityRecord,
    IdentityRefRecord,
    RecordError,
)
from controlplane.store import etcd as ops
from controlplane.store.etcd import KV, Etcd
from controlplane.store.groupcommit import GroupCommit
from controlplane.store.keys import Keys

from .index import IdentityIndex
from .labels import MAX_LABELS, LabelFilter, LabelSet, label_bytes, parse_labels

MAX_ATTEMPTS = 64
HOLDER_MAX = 300


@dataclass(frozen=True)
class IdentityRange:
    first: int
    last: int

    @staticmethod
    def for_cluster(cluster_id: int) -> IdentityRange:
        if not 0 <= cluster_id <= 255:
            raise ValueError("cluster id must be 0-255")
        if cluster_id == 0:
            return IdentityRange(256, 0xFFFF)
        return IdentityRange(cluster_id << 16, (cluster_id << 16) | 0xFFFF)

    def __contains__(self, ident: object) -> bool:
        return isinstance(ident, int) and self.first <= ident <= self.last

    @property
    def size(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class IdentityLimits:
    """Quotas on what new identities may store (control-plane flags): per identity, counted
    on the canonical set (noise labels dropped), and for all identities of the cluster.
    Identities that exist already stay usable when the limits are lowered."""

    max_labels: int = MAX_LABELS
    max_label_bytes: int = 8 << 10
    max_total_label_bytes: int = 64 << 20


@dataclass(frozen=True)
class AllocatedIdentity:
    """What the allocator answers: an identity and how many references hold it. (The policy
    engine's identity, labels only, is `controlplane.policy.model.Identity`.)"""

    id: int
    labels: tuple[str, ...]
    references: int = 0


def _check_holder(holder: str) -> str:
    holder = holder or "admin"
    if len(holder) > HOLDER_MAX or "\0" in holder:
        raise Invalid([FieldViolation("holder", f"at most {HOLDER_MAX} characters, no NUL")])
    return holder


class IdentityAllocator:
    def __init__(self, etcd: Etcd, keys: Keys, index: IdentityIndex, id_range: IdentityRange,
                 label_filter: LabelFilter | None = None,
                 limits: IdentityLimits | None = None) -> None:
        self.etcd = etcd
        self.keys = keys
        self.index = index
        self.range = id_range
        self.label_filter = label_filter or LabelFilter()
        self.limits = limits or IdentityLimits()
        self.group = GroupCommit(etcd)  # concurrent new identities share one etcd transaction
        self.allocated = {"new": 0, "existing": 0, "reserved": 0, "over_quota": 0}  # metrics

    def canonical(self, labels: Sequence[str], field_name: str = "labels") -> LabelSet:
        label_set, problems = parse_labels(labels, field_name, self.label_filter)
        if problems:
            raise Invalid(problems)
        return label_set

    def lookup(self, labels: Sequence[str]) -> AllocatedIdentity:
        label_set = self.canonical(labels)
        reserved = label_set.reserved_id()
        if reserved is not None:
            return AllocatedIdentity(reserved, label_set.labels)
        ident = self.index.by_labels.get(label_set.key)
        if ident is None:
            raise NotFound(f"no identity for labels {list(label_set.labels)}")
        return AllocatedIdentity(ident, label_set.labels, self.index.references(ident))

    def get(self, ident: int) -> AllocatedIdentity:
        labels = self.index.labels_of(ident)
        if labels is None:
            raise NotFound(f"identity {ident} does not exist")
        return AllocatedIdentity(ident, labels, self.index.references(ident))

    def reference_key(self, ident: int, holder: str) -> str:
        """The key of `holder`'s reference on `ident`: endpoints and policies delete it (and
        require it) in their own transactions, so that it lives and dies with them."""
        return self.keys.identity_ref(ident, holder)

    async def allocate(self, labels: Sequence[str] | LabelSet, holder: str = "admin", *,
                       lease: int = 0, single: bool = False) -> AllocatedIdentity:
        """The identity of `labels` (raw, or already canonical) with one more reference by
        `holder`.

        With `single`, the holder keeps exactly one reference however often it asks (an
        endpoint whose create is retried must not count twice).
        """
        holder = _check_holder(holder)
        label_set = labels if isinstance(labels, LabelSet) else self.canonical(labels)
        reserved = label_set.reserved_id()
        if reserved is not None:
            self.allocated["reserved"] += 1
            return AllocatedIdentity(reserved, label_set.labels)
        if label_set.key not in self.index.by_labels:
            try:
                self._check_quota(label_set)
            except BulkheadError:
                self.allocated["over_quota"] += 1
                raise
        labels_key = self.keys.identity_labels(label_set.key)
        cache_lags = False
        for _ in range(MAX_ATTEMPTS):
            # The cache answers almost always. Once it has proved behind etcd (a lost race, or
            # an identity it still holds was collected) read etcd itself: asking the lagging
            # cache again would find the same collected id every time and spin to Conflict.
            known = (await self._read_id(labels_key) if cache_lags
                     else self.index.by_labels.get(label_set.key))
            if known is not None:
                if await self._add_reference(known, labels_key, holder, lease, single):
                    self.allocated["existing"] += 1
                    return AllocatedIdentity(known, label_set.labels)
                cache_lags = True
                continue  # collected meanwhile: allocate afresh
            candidate = self._candidate()
            if candidate is None:
                raise Exhausted(f"identity range {self.range.first}-{self.range.last} is full")
            value = IdentityRecord(candidate, label_set.labels).encode()
            ref = IdentityRefRecord(1).encode()
            created = await self.group.txn(
                [ops.version_is(labels_key, 0), ops.version_is(self.keys.identity(candidate), 0)],
                [ops.put(self.keys.identity(candidate), value),
                 ops.put(labels_key, IdentityLabelsRecord(candidate).encode()),
                 ops.put(self.reference_key(candidate, holder), ref, lease)],
            )
            if created:
                self.allocated["new"] += 1
                return AllocatedIdentity(candidate, label_set.labels, 1)
            cache_lags = True
            # Lost a race: either these labels got an id meanwhile (next loop adds a
            # reference to it) or the candidate id was taken (next loop tries another).
        raise Conflict("identity allocation kept conflicting; retry")

    async def release(self, ident: int, holder: str = "admin") -> int:
        """Drops one reference of `holder`; returns the references left on the identity."""
        holder = _check_holder(holder)
        if ident in RESERVED_BY_ID:
            return 0
        ref_key = self.reference_key(ident, holder)
        for _ in range(MAX_ATTEMPTS):
            kv = await self.etcd.get(ref_key)
            if kv is None:
                if await self.etcd.get(self.keys.identity(ident)) is None:
                    raise NotFound(f"identity {ident} does not exist")
                raise NotFound(f"identity {ident} has no reference held by {holder!r}")
            count = _readable(IdentityRefRecord, kv).count
            if count <= 1:
                op = ops.delete(ref_key)
            else:
                op = ops.put(ref_key, IdentityRefRecord(count - 1).encode(), kv.lease)
            result = await self.etcd.txn([ops.mod_revision_is(ref_key, kv.mod_revision)], [op],
                                         [])
            if result.succeeded:
                others = sum(c for h, c in self.index.refs.get(ident, {}).items() if h != holder)
                return others + count - 1
        raise Conflict("release kept conflicting; retry")

    def _check_quota(self, label_set: LabelSet) -> None:
        """Refuses a new identity over the per-identity limits (INVALID_ARGUMENT on `labels`)
        or over the cluster's total (RESOURCE_EXHAUSTED)."""
        limits = self.limits
        count, size = len(label_set.labels), label_bytes(label_set.labels)
        if count > limits.max_labels:
            raise Invalid([FieldViolation(
                "labels", f"{count} security-relevant labels; this cluster allows at most "
                          f"{limits.max_labels} per identity")])
        if size > limits.max_label_bytes:
            raise Invalid([FieldViolation(
                "labels", f"{size} bytes of security-relevant labels; this cluster allows at "
                          f"most {limits.max_label_bytes} per identity")])
        if self.index.label_bytes + size > limits.max_total_label_bytes:
            raise Exhausted(f"identity label quota: identities hold {self.index.label_bytes} "
                            f"bytes of labels, this one needs {size} more and the cluster "
                            f"allows {limits.max_total_label_bytes} in all; release unused "
                            f"identities or raise --identity-max-total-label-bytes")

    async def _read_id(self, labels_key: str) -> int | None:
        kv = await self.etcd.get(labels_key)
        return _readable(IdentityLabelsRecord, kv).id if kv else None

    async def _add_reference(self, ident: int, labels_key: str, holder: str, lease: int,
                             single: bool) -> bool:
        """One more reference, in a transaction that fails if the identity was collected."""
        ref_key = self.reference_key(ident, holder)
        id_key = self.keys.identity(ident)
        for _ in range(MAX_ATTEMPTS):
            kv = await self.etcd.get(ref_key)
            count = _readable(IdentityRefRecord, kv).count if kv else 0
            if single:
                count = 0
            ref_guard = (ops.mod_revision_is(ref_key, kv.mod_revision) if kv
                         else ops.version_is(ref_key, 0))
            result = await self.etcd.txn(
                [ops.exists(id_key), ops.value_is(labels_key, IdentityLabelsRecord(ident).encode()),
                 ref_guard],
                [ops.put(ref_key, IdentityRefRecord(count + 1).encode(), lease or
                         (kv.lease if kv else 0))],
                [ops.get(id_key)],
            )
            if result.succeeded:
                return True
            if not result.range_kvs(0):
                return False
        return False

    def _candidate(self) -> int | None:
        """A number the index does not know; random so that replicas rarely collide."""
        used = self.index.by_id
        if len(used) >= self.range.size:
            return None
        for _ in range(32):
            ident = random.randint(self.range.first, self.range.last)
            if ident not in used:
                return ident
        start = random.randint(self.range.first, self.range.last)
        for offset in range(self.range.size):
            ident = self.range.first + (start - self.range.first + offset) % self.range.size
            if ident not in used:
                return ident
        return None


_R = TypeVar("_R", IdentityLabelsRecord, IdentityRefRecord)


def _readable(kind: type[_R], kv: KV) -> _R:
    """A record read straight from etcd; one that does not decode is named, not an INTERNAL
    error (the cache holds it apart too: `bulkhead status` lists it)."""
    try:
        return kind.decode(kv.value)
    except RecordError as exc:
        raise FailedPrecondition(f"stored record {kv.key} is unreadable: {exc}; put a correct "
                                 f"value back or delete the key") from None
