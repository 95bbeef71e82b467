"""One remote cluster followed into the local etcd, KVStoreMesh style: the remote's nodes,
ipcache entries, identities, endpoints and services are mirrored under
`clustermesh/mirror/<remote>/`, so agents get the first three through the one subscription
(one revision space) like local state, and global services derive remote backends from the
last two.

The syncer lists once, then watches from the last remote revision it mirrored (kept in
`clustermesh/status/<remote>` with every write, so a restart or another replica resumes there)
and lists again only when the remote compacted past it. When the remote is unreachable the
mirrored state stays as it was (last known), the status says not ready with the error, and
the syncer retries with backoff. Every local write is guarded by the connection record and
this replica's leadership, so a disconnect or a new leader stops it from writing."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import Any

import grpc

from bulkhead import log
from controlplane.records.codec import (
    MIRRORED,
    MeshStatusRecord,
    RemoteClusterRecord,
    mirrored_kind,
)
from controlplane.store import etcd as ops
from controlplane.store.cache import ClusterCache
from controlplane.store.etcd import Compacted, Etcd, EtcdPermissionDenied, EtcdUnavailable
from controlplane.store.keys import Keys

from .remote import remote_etcd

_log = log.get(__name__)
CHUNK = 100
"""Mirror operations per local transaction (etcd allows 128 by default)."""
IN_FLIGHT = 4
"""A relist's mirror transactions in flight at once: one at a time, a 10,000-endpoint remote
(300 transactions) waited out 300 local round trips; etcd commits concurrent ones together."""
PROGRESS_EVERY = 5.0
"""Seconds between progress requests on the remote watch (last sync, revision)."""
MAX_BACKOFF = 5.0
WATCHED = ("endpoints/", "services/")
"""The first and the last of the mirrored prefixes in key order: the remote watch covers the
keys between them (endpoints, identities, ipam, ipcache, nodes, policies, replicas, services;
what is not mirrored is skipped) and not the rest of the cluster (clustermesh, the
subscription status records)."""


class NotLeader(Exception):
    """A guarded write failed: the remote was disconnected or reconnected, or another replica
    leads its syncer now."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _reason(exc: Exception) -> str:
    """One line for the status: a gRPC error's code and details, not its repr."""
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return f"{exc.code().name}: {exc.details() or ''}"[:300]
    return str(exc)[:300]


class RemoteSyncer:
    def __init__(self, etcd: Etcd, keys: Keys, cache: ClusterCache, record: RemoteClusterRecord,
                 record_revision: int, replica_id: str, *, cache_ttl: float = 0.0) -> None:
        self.etcd = etcd
        self.keys = keys
        self.record = record
        self.name = record.name
        self.replica_id = replica_id
        self.remote_prefix = Keys(record.name).prefix
        self.mirror = keys.mesh_mirror(record.name)
        self.guard = [ops.mod_revision_is(keys.mesh_remote(record.name), record_revision),
                      ops.value_is(keys.mesh_leader(record.name), replica_id.encode())]
        kv = cache.items.get(keys.mesh_status(record.name))
        known = MeshStatusRecord.of_kv(kv) if kv is not None else MeshStatusRecord(record.name)
        self.status = MeshStatusRecord(record.name, known.revision, False, known.last_sync,
                                       known.failures, known.last_error, replica_id)
        self.cache_ttl = cache_ttl
        """Seconds out of sync after which the mirrored state is dropped (0: never)."""
        self._synced_at = time.monotonic()
        self._expired = False

    async def run(self) -> None:
        backoff = 0.2
        while True:
            remote = remote_etcd(self.record)
            try:
                await self._follow(remote)
            except NotLeader:
                _log.info("clustermesh syncer stops", remote=self.name)
                return
            except Exception as exc:   # unreachable, or anything else: keep trying, say why
                if self.status.ready:  # it worked until now: a new outage
                    backoff = 0.2
                failed = self.status
                self.status = MeshStatusRecord(
                    self.name, failed.revision, False, failed.last_sync, failed.failures + 1,
                    _reason(exc), self.replica_id)
                if isinstance(exc, EtcdPermissionDenied):
                    _log.warning("clustermesh remote refuses the credential", remote=self.name,
                                 error=_reason(exc), backoff=backoff)
                elif isinstance(exc, (EtcdUnavailable, grpc.RpcError, OSError)):
                    _log.warning("clustermesh remote unreachable", remote=self.name,
                                 error=_reason(exc), backoff=backoff)
                else:
                    _log.exception("clustermesh syncer failed", remote=self.name)
                try:
                    expiring = self._expire()
                    await self._write(expiring)
                    self._expired = self._expired or bool(expiring)
                except NotLeader:
                    return
                except (EtcdUnavailable, grpc.RpcError):
                    pass
            finally:
                with contextlib.suppress(Exception):
                    await remote.close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _expire(self) -> list[Any]:
        """With a cache TTL, once the remote has been out of sync that long: the operations
        that drop its mirrored state (and the resume revision: the next sync lists)."""
        if not self.cache_ttl or self._expired or \
                time.monotonic() - self._synced_at < self.cache_ttl:
            return []
        s = self.status
        self.status = MeshStatusRecord(self.name, 0, False, s.last_sync, s.failures,
                                       s.last_error, self.replica_id)
        _log.warning("clustermesh remote state expired", remote=self.name,
                     ttl=self.cache_ttl)
        return [ops.delete(self.mirror, prefix=True)]

    async def _follow(self, remote: Etcd) -> None:
        if self.status.revision == 0:
            await self._relist(remote)
        while True:
            try:
                await self._watch(remote)
            except Compacted:
                _log.warning("clustermesh remote compacted past the mirror, relisting",
                             remote=self.name, revision=self.status.revision)
                await self._relist(remote)

    def _advance(self, revision: int, *, ready: bool | None = None) -> None:
        s = self.status
        if ready or (ready is None and s.ready):
            self._synced_at = time.monotonic()
            self._expired = False
        self.status = MeshStatusRecord(self.name, max(revision, s.revision),
                                       s.ready if ready is None else ready, _now(),
                                       s.failures, s.last_error, self.replica_id)

    async def _write(self, mirror_ops: list[Any], *, distinct: bool = False) -> None:
        """The mirror operations, then the status with the last of them, each transaction
        guarded. With `distinct` (no two operations on one key, so their order does not
        matter) up to IN_FLIGHT transactions run at once; the status still goes only after
        every other chunk succeeded."""
        chunks = [mirror_ops[i:i + CHUNK] for i in range(0, len(mirror_ops), CHUNK)] or [[]]
        *before, last = chunks
        if distinct and before:
            await self._txns(before, IN_FLIGHT)
        else:
            for chunk in before:
                await self._txn(chunk)
        status = dataclasses.replace(self.status, cluster_id=self.record.id)
        await self._txn([*last, ops.put(self.keys.mesh_status(self.name), status.encode())])

    async def _txn(self, success: list[Any]) -> None:
        result = await self.etcd.txn(self.guard, success)
        if not result.succeeded:
            raise NotLeader()

    async def _txns(self, chunks: list[list[Any]], in_flight: int) -> None:
        """Each chunk in its own transaction, `in_flight` at a time; the first failure
        cancels the rest and is raised as is (NotLeader stays NotLeader)."""
        pending = iter(chunks)

        async def writer() -> None:
            for chunk in pending:
                await self._txn(chunk)

        writers = [asyncio.create_task(writer()) for _ in range(min(in_flight, len(chunks)))]
        try:
            await asyncio.gather(*writers)
        finally:
            for task in writers:
                task.cancel()
            await asyncio.gather(*writers, return_exceptions=True)

    async def _relist(self, remote: Etcd) -> None:
        """The remote's mirrored kinds at one revision, replacing the whole mirror."""
        wanted: dict[str, bytes] = {}
        revision = 0
        for prefix, _record in MIRRORED:
            async for kvs, read_at in remote.pages(self.remote_prefix + prefix,
                                                   revision=revision, limit=2000):
                revision = read_at   # one revision for every kind
                for kv in kvs:
                    wanted[self.mirror + kv.key[len(self.remote_prefix):]] = kv.value
        have = await self._local_mirror()
        changes = [ops.put(key, value) for key, value in wanted.items()
                   if have.get(key) != value]
        changes += [ops.delete(key) for key in have if key not in wanted]
        self._advance(revision, ready=False)
        await self._write(changes, distinct=True)   # keys of two dicts: each once
        _log.info("clustermesh remote listed", remote=self.name, revision=revision,
                  keys=len(wanted), changed=len(changes))

    async def _local_mirror(self) -> dict[str, bytes]:
        have: dict[str, bytes] = {}
        async for kvs, _revision in self.etcd.pages(self.mirror):
            have.update((kv.key, kv.value) for kv in kvs)
        return have

    async def _watch(self, remote: Etcd) -> None:
        ask: asyncio.Queue[None] = asyncio.Queue()
        # Only the key range that holds the mirrored kinds (endpoints/ .. services/, in key
        # order): not the remote's subscription status records or its own mirrors.
        call = remote.watch(self.remote_prefix + WATCHED[0], self.status.revision + 1,
                            ask_progress=ask,
                            end=ops.prefix_end(self.remote_prefix + WATCHED[1]))

        async def ask_periodically() -> None:
            while True:
                await asyncio.sleep(PROGRESS_EVERY)
                ask.put_nowait(None)

        asker = asyncio.create_task(ask_periodically())
        try:
            async for response in call:
                if response.compact_revision:
                    raise Compacted(response.compact_revision)
                if response.canceled:
                    if "permission denied" in response.cancel_reason:
                        raise EtcdPermissionDenied(response.cancel_reason)
                    raise EtcdUnavailable(response.cancel_reason or "remote watch canceled")
                if response.created:
                    ask.put_nowait(None)   # ready once etcd says every event so far arrived
                    continue
                if response.events:
                    await self._apply(response.events)
                else:
                    # A progress response: every event so far has arrived. Its header revision
                    # is not taken as the resume point: etcd before 3.4.24/3.5.8 answers a
                    # progress request at once, possibly ahead of events still queued (etcd
                    # issue 15220); the events' own revisions are always safe to resume from.
                    first = not self.status.ready
                    self._advance(0, ready=True)
                    await self._write([])
                    if first:
                        _log.info("clustermesh remote in sync", remote=self.name,
                                  revision=self.status.revision)
            raise EtcdUnavailable("remote watch ended")
        finally:
            asker.cancel()
            call.cancel()

    async def _apply(self, events: Any) -> None:
        changes = []
        revision = 0
        for event in events:
            key = event.kv.key.decode()
            revision = max(revision, event.kv.mod_revision)
            rest = key[len(self.remote_prefix):]
            if mirrored_kind(rest) is None:
                continue
            if event.type == 0:
                changes.append(ops.put(self.mirror + rest, event.kv.value))
            else:
                changes.append(ops.delete(self.mirror + rest))
        self._advance(revision)
        if changes:   # the revision alone is persisted with the next progress response
            await self._write(changes)
