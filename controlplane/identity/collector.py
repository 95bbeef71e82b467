"""Garbage collection of identities nobody references any more.

An identity is collected once it has been seen without references for the grace period.
The delete is a transaction that requires the references prefix to be empty and the id key
unchanged since it was seen, so an allocation that re-uses the identity concurrently wins.
Every replica runs a collector; whichever comes first deletes, the others' transactions fail.
"""

from __future__ import annotations

import asyncio
import time

from bulkhead import log
from controlplane.store import etcd as ops
from controlplane.store.etcd import Etcd, EtcdUnavailable
from controlplane.store.keys import Keys

from .index import IdentityIndex

_log = log.get(__name__)


class IdentityCollector:
    def __init__(self, etcd: Etcd, keys: Keys, index: IdentityIndex, grace: float) -> None:
        self.etcd = etcd
        self.keys = keys
        self.index = index
        self.grace = grace
        self.collected = 0
        self._unreferenced_since: dict[int, tuple[float, int]] = {}

    async def run(self) -> None:
        interval = max(0.2, min(self.grace / 4, 10.0))
        while True:
            try:
                await self.collect_once()
            except EtcdUnavailable as exc:
                _log.warning("identity gc skipped", error=str(exc))
            await asyncio.sleep(interval)

    async def collect_once(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        seen: dict[int, tuple[float, int]] = {}
        due = []
        for ident, stored in list(self.index.by_id.items()):
            if self.index.refs.get(ident):
                continue
            since, revision = self._unreferenced_since.get(ident, (now, stored.mod_revision))
            if revision != stored.mod_revision:
                since = now
            seen[ident] = (since, stored.mod_revision)
            if now - since >= self.grace:
                due.append(stored)
        self._unreferenced_since = seen
        collected = 0
        for stored in due:
            result = await self.etcd.txn(
                [ops.version_is(self.keys.identity_refs(stored.id), 0, prefix=True),
                 ops.mod_revision_is(self.keys.identity(stored.id), stored.mod_revision)],
                [ops.delete(self.keys.identity(stored.id)),
                 ops.delete(self.keys.identity_labels(";".join(stored.labels)))],
            )
            if result.succeeded:
                collected += 1
                self._unreferenced_since.pop(stored.id, None)
                _log.info("identity collected", identity=stored.id, labels=list(stored.labels))
        self.collected += collected
        return collected
