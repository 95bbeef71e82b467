"""The replica's view of identities, fed by the cluster cache: id <-> labels and references."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from bulkhead.reserved import RESERVED_BY_ID, reserved_labels
from controlplane.records.codec import IdentityRecord, IdentityRefRecord
from controlplane.store.cache import Change
from controlplane.store.etcd import KV
from controlplane.store.keys import Keys

from .labels import label_bytes


@dataclass(frozen=True, slots=True)
class StoredIdentity:
    id: int
    labels: tuple[str, ...]
    mod_revision: int


class IdentityIndex:
    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.by_id: dict[int, StoredIdentity] = {}
        self.by_labels: dict[str, int] = {}
        self.refs: dict[int, dict[str, int]] = defaultdict(dict)  # id -> holder -> count
        self.label_bytes = 0   # of every stored identity's labels, for the cluster's quota

    def labels_of(self, ident: int) -> tuple[str, ...] | None:
        """The labels of identity `ident`, reserved ones included; None when it is unknown."""
        if ident in RESERVED_BY_ID:
            return reserved_labels(ident)
        stored = self.by_id.get(ident)
        return stored.labels if stored is not None else None

    def references(self, ident: int) -> int:
        return sum(self.refs.get(ident, {}).values())

    def reset(self, items: dict[str, KV], revision: int) -> None:
        self.by_id.clear()
        self.by_labels.clear()
        self.refs.clear()
        self.label_bytes = 0
        for kv in items.values():
            self._put(kv)

    def apply(self, revision: int, changes: list[Change]) -> None:
        for change in changes:
            if change.kv is not None:
                self._put(change.kv)
            elif change.prev is not None:
                self._delete(change.prev)

    def _put(self, kv: KV) -> None:
        if kv.key.startswith(self.keys.identity_ids):
            record = IdentityRecord.of_kv(kv)
            ident = StoredIdentity(record.id, record.labels, kv.mod_revision)
            replaced = self.by_id.get(ident.id)
            if replaced is not None:
                self.label_bytes -= label_bytes(replaced.labels)
            self.label_bytes += label_bytes(ident.labels)
            self.by_id[ident.id] = ident
            self.by_labels[";".join(ident.labels)] = ident.id
        elif kv.key.startswith(self.keys.identity_refs_prefix):
            ident_s, _, holder = kv.key[len(self.keys.identity_refs_prefix):].partition("/")
            self.refs[int(ident_s)][holder] = IdentityRefRecord.of_kv(kv).count

    def _delete(self, kv: KV) -> None:
        if kv.key.startswith(self.keys.identity_ids):
            ident = self.by_id.pop(int(kv.key[len(self.keys.identity_ids):]), None)
            if ident is not None:
                self.by_labels.pop(";".join(ident.labels), None)
                self.label_bytes -= label_bytes(ident.labels)
        elif kv.key.startswith(self.keys.identity_refs_prefix):
            ident_s, _, holder = kv.key[len(self.keys.identity_refs_prefix):].partition("/")
            holders = self.refs.get(int(ident_s))
            if holders is not None:
                holders.pop(holder, None)
                if not holders:
                    del self.refs[int(ident_s)]
