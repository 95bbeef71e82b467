"""One etcd watch per replica: an in-memory copy of the cluster's keys at a known revision.

Every view the control plane serves (identities, nodes, endpoints, ipcache, policies,
subscriptions) is fed from here, so a replica holds only what it can rebuild from etcd.
Listeners see each etcd revision whole, in order; a relist (start, compaction, lost history)
is announced with `reset` so they can rebuild. A record that does not decode as its kind
(`controlplane/records/codec.py`) is held apart in `bad`, logged once, and never reaches
`items` or a listener: to them a good record overwritten with a bad value is deleted, and a
bad one fixed is new. The control plane registers one listener, the revision pipeline
(`controlplane/pipeline.py`), which orders what a replica derives from each revision.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import grpc

from bulkhead import log
from controlplane.records.codec import BadRecord, Records

from .etcd import KV, Compacted, Etcd, EtcdUnavailable

_log = log.get(__name__)


@dataclass(frozen=True, slots=True)
class Change:
    kind: Literal["put", "delete"]
    key: str
    kv: KV | None       # the new value (None on delete)
    prev: KV | None     # what the cache held before


class Listener(Protocol):
    def reset(self, items: dict[str, KV], revision: int) -> None:
        """The cache was (re)listed at `revision`: `items` is everything."""

    def apply(self, revision: int, changes: list[Change]) -> None:
        """The cache advanced to `revision` by `changes`, which may be empty: etcd reported
        progress, or only undecodable records changed."""


class ClusterCache:
    def __init__(self, etcd: Etcd, prefix: str, *, page: int = 5000) -> None:
        self.etcd = etcd
        self.prefix = prefix
        self.items: dict[str, KV] = {}
        # The same KVs grouped by their first path element under the prefix ("nodes",
        # "ipcache", ...), so that listing one kind does not walk every key of the cluster.
        self._kinds: dict[str, dict[str, KV]] = {}
        self.revision = 0
        self._page = page
        self._listeners: list[Listener] = []
        self._advanced = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._watch_answered = False
        self.records = Records(prefix)
        self.bad: dict[str, BadRecord] = {}
        """Keys whose value does not decode, kept out of `items`."""

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)
        if self._ready.is_set():
            listener.reset(self.items, self.revision)

    def under(self, prefix: str) -> Iterator[KV]:
        kind, slash, rest = prefix[len(self.prefix):].partition("/")
        if not prefix.startswith(self.prefix) or not slash:
            return (kv for key, kv in self.items.items() if key.startswith(prefix))
        found = self._kinds.get(kind, {})
        if not rest:
            return iter(found.values())
        return (kv for key, kv in found.items() if key.startswith(prefix))

    def _kind(self, key: str) -> dict[str, KV]:
        kind = key[len(self.prefix):].partition("/")[0]
        found = self._kinds.get(kind)
        if found is None:
            found = self._kinds[kind] = {}
        return found

    async def start(self) -> None:
        await self._relist()
        self._task = asyncio.create_task(self._watch_forever(), name="cluster-cache-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_for(self, revision: int, timeout: float = 5.0) -> bool:
        """Waits until the cache has seen `revision` (read-your-writes for list views)."""
        async with self._advanced:
            try:
                await asyncio.wait_for(
                    self._advanced.wait_for(lambda: self.revision >= revision), timeout)
            except TimeoutError:
                return False
        return True

    async def _relist(self) -> None:
        items: dict[str, KV] = {}
        bad: dict[str, BadRecord] = {}
        revision = 0
        async for kvs, read_at in self.etcd.pages(self.prefix, limit=self._page):
            revision = read_at
            for kv in kvs:
                kv, found = self._take(kv, self.bad.get(kv.key))
                if found is None:
                    items[kv.key] = kv
                else:
                    bad[kv.key] = found
        for key in self.bad.keys() - bad.keys():
            _log.info("record readable again or gone", key=key)
        self.items = items
        self.bad = bad
        self._kinds = {}
        for key, kv in items.items():
            self._kind(key)[key] = kv
        self.revision = revision
        for listener in self._listeners:
            listener.reset(self.items, revision)
        self._ready.set()
        await self._notify()
        _log.info("cluster cache listed", keys=len(items), revision=revision)

    async def _notify(self) -> None:
        async with self._advanced:
            self._advanced.notify_all()

    async def _watch_forever(self) -> None:
        backoff = 0.1
        while True:
            self._watch_answered = False
            try:
                await self._watch_once()
            except (EtcdUnavailable, grpc.RpcError) as exc:
                if self._watch_answered:   # it worked until now: this is a new outage
                    backoff = 0.1
                _log.warning("etcd watch broken, retrying", error=str(exc), backoff=backoff)
                await asyncio.sleep(backoff * (1 + random.random()))
                backoff = min(backoff * 2, 5.0)
                continue
            except Compacted:
                _log.warning("watch revision compacted, relisting", revision=self.revision)
                while True:
                    try:
                        await self._relist()
                        break
                    except (EtcdUnavailable, grpc.RpcError) as exc:
                        # etcd went away again (an embedded etcd being restarted): keep trying
                        _log.warning("relist failed, retrying", error=str(exc), backoff=backoff)
                        await asyncio.sleep(backoff * (1 + random.random()))
                        backoff = min(backoff * 2, 5.0)
            backoff = 0.1

    async def _watch_once(self) -> None:
        """Reads the watch on a thread and applies whatever has arrived at each loop turn, so
        a busy loop (thousands of agent streams) never throttles the watch to one response per
        turn; listeners still run on the loop, one whole revision at a time, in order."""
        loop = asyncio.get_running_loop()
        inbox: collections.deque[Any] = collections.deque()
        arrived = asyncio.Event()
        watch = self.etcd.watch_blocking(self.prefix, self.revision + 1)

        def signal() -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be closing
                loop.call_soon_threadsafe(arrived.set)

        def read() -> None:
            try:
                for response in watch:
                    inbox.append(response)
                    signal()
                inbox.append(EtcdUnavailable("watch stream ended"))
            except Exception as exc:
                inbox.append(exc)
            signal()

        reader = threading.Thread(target=read, name="etcd-watch", daemon=True)
        reader.start()
        try:
            while True:
                await arrived.wait()
                arrived.clear()
                while inbox:
                    item = inbox.popleft()
                    if isinstance(item, Exception):
                        raise item
                    self._watch_answered = True
                    self._handle(item)
                await self._notify()
        finally:
            watch.cancel()

    def _handle(self, response: Any) -> None:
        if response.compact_revision:
            raise Compacted(response.compact_revision)
        if response.canceled:
            raise EtcdUnavailable(response.cancel_reason or "watch canceled")
        if response.events:
            self._apply_events(response.events)
        elif response.header.revision > self.revision and not response.created:
            self._commit(response.header.revision, [])

    def _take(self, kv: KV, known: BadRecord | None) -> tuple[KV, BadRecord | None]:
        """`kv` with its decoded record attached (readers need not decode it again), and why
        it cannot enter the cache (logged when it is news), or None."""
        record, problem = self.records.decode(kv.key, kv.value)
        if problem is None:
            if record is None:
                return kv, None
            return KV(kv.key, kv.value, kv.mod_revision, kv.create_revision, kv.version,
                      kv.lease, record), None
        kind, reason = problem
        if known is None or known.reason != reason:
            _log.error("undecodable record skipped", key=kv.key, kind=kind, reason=reason,
                       mod_revision=kv.mod_revision)
        return kv, BadRecord(kv.key, kind, reason, kv.mod_revision)

    def _apply_events(self, events: list) -> None:  # type: ignore[type-arg]
        batch: list[Change] = []
        batch_revision = 0
        for event in events:
            kv = KV.of(event.kv)
            if kv.mod_revision != batch_revision and batch_revision:
                self._commit(batch_revision, batch)
                batch = []
            batch_revision = kv.mod_revision
            prev = self.items.get(kv.key)
            known = self.bad.pop(kv.key, None)
            bad = None
            if event.type == 0:
                kv, bad = self._take(kv, known)
            if bad is not None:
                self.bad[kv.key] = bad   # a good record overwritten by a bad one is gone
            elif known is not None:
                _log.info("record readable again or gone", key=kv.key)
            if event.type == 0 and bad is None:  # PUT
                self.items[kv.key] = kv
                self._kind(kv.key)[kv.key] = kv
                batch.append(Change("put", kv.key, kv, prev))
            elif prev is not None:
                self.items.pop(kv.key, None)
                self._kind(kv.key).pop(kv.key, None)
                batch.append(Change("delete", kv.key, None, prev))
        if batch_revision:
            self._commit(batch_revision, batch)

    def holds(self, key: str) -> bool:
        """Whether `key` exists in etcd as of this cache, its record readable or not."""
        return key in self.items or key in self.bad

    def _commit(self, revision: int, changes: list[Change]) -> None:
        self.revision = revision
        for listener in self._listeners:
            try:
                listener.apply(revision, changes)
            except Exception:
                _log.exception("cache listener failed", listener=type(listener).__name__)
