"""Runs one syncer per connected remote cluster on exactly one replica: each remote has a
leader key (`clustermesh/leaders/<remote>`) on this replica's lease, so replicas do not
multiply the load on the remote etcd, and a dead replica's remotes move to another within the
lease's TTL."""

from __future__ import annotations

import asyncio
import contextlib

import grpc

from bulkhead import log
from controlplane.records.codec import RemoteClusterRecord
from controlplane.store import etcd as ops
from controlplane.store.cache import ClusterCache
from controlplane.store.etcd import Etcd, EtcdUnavailable
from controlplane.store.keys import Keys

from .syncer import RemoteSyncer

TTL = 10
POLL = 1.0
_log = log.get(__name__)


class ClusterMesh:
    def __init__(self, etcd: Etcd, keys: Keys, cache: ClusterCache, replica_id: str, *,
                 cache_ttl: float = 0.0) -> None:
        self.etcd = etcd
        self.cache_ttl = cache_ttl
        self.keys = keys
        self.cache = cache
        self.replica_id = replica_id
        self._lease = 0
        self._syncers: dict[str, tuple[int, asyncio.Task[None]]] = {}

    def leading(self) -> list[str]:
        """The remotes this replica syncs now."""
        return sorted(name for name, (_, task) in self._syncers.items() if not task.done())

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self._round()
                except (EtcdUnavailable, grpc.RpcError) as exc:
                    _log.warning("clustermesh leadership not renewed", error=str(exc))
                    self._lease = 0
                except Exception:   # never let one bad round end the mesh for good
                    _log.exception("clustermesh round failed")
                await asyncio.sleep(POLL)
        finally:
            for name in list(self._syncers):
                await self._stop(name)
            if self._lease:
                with contextlib.suppress(EtcdUnavailable, grpc.RpcError):
                    await self.etcd.revoke(self._lease)

    async def _round(self) -> None:
        remotes = {kv.key[len(self.keys.mesh_remotes):]: kv
                   for kv in self.cache.under(self.keys.mesh_remotes)}
        if not remotes and not self._syncers:
            return
        if self._lease == 0 or await self.etcd.keepalive(self._lease) <= 0:
            self._lease = await self.etcd.grant(TTL)
        for name in list(self._syncers):
            if name not in remotes:
                await self._stop(name)
        for name, kv in remotes.items():
            if await self._lead(name):
                running = self._syncers.get(name)
                if running is None or running[0] != kv.mod_revision or running[1].done():
                    await self._stop(name)
                    syncer = RemoteSyncer(self.etcd, self.keys, self.cache,
                                          RemoteClusterRecord.of_kv(kv), kv.mod_revision,
                                          self.replica_id, cache_ttl=self.cache_ttl)
                    self._syncers[name] = (kv.mod_revision, asyncio.create_task(
                        syncer.run(), name=f"clustermesh-{name}"))
            else:
                await self._stop(name)
        # a leader key taken for a remote disconnected meanwhile would be renewed forever
        for kv in list(self.cache.under(self.keys.mesh_leaders)):
            name = kv.key[len(self.keys.mesh_leaders):]
            if name not in remotes and kv.value == self.replica_id.encode():
                await self.etcd.txn([ops.value_is(kv.key, kv.value)], [ops.delete(kv.key)])

    async def _lead(self, name: str) -> bool:
        """Whether this replica leads the remote's syncer (taking the key when free)."""
        key = self.keys.mesh_leader(name)
        me = self.replica_id.encode()
        held = self.cache.items.get(key)
        if held is not None and held.value == me and held.lease == self._lease:
            return True
        result = await self.etcd.txn(
            [ops.version_is(key, 0)], [ops.put(key, me, self._lease)], [ops.get(key)])
        if result.succeeded:
            _log.info("clustermesh syncer leader", remote=name, replica=self.replica_id)
            return True
        current = result.range_kvs(0)
        if current and current[0].value == me:   # ours on an older lease: move it
            await self.etcd.txn([ops.value_is(key, me)], [ops.put(key, me, self._lease)])
            return True
        return False

    async def _stop(self, name: str) -> None:
        entry = self._syncers.pop(name, None)
        if entry is not None:
            entry[1].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await entry[1]
