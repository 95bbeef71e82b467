"""Each replica announces itself under replicas/<id> on a short lease, so `bulkhead status` on
any replica lists them all and a dead one drops out by itself."""

from __future__ import annotations

import asyncio
import time

from bulkhead import log
from controlplane.records.codec import PresenceRecord
from controlplane.store.cache import ClusterCache
from controlplane.store.etcd import Etcd, EtcdUnavailable
from controlplane.store.keys import Keys

TTL = 10
_log = log.get(__name__)


class ReplicaPresence:
    def __init__(self, etcd: Etcd, keys: Keys, cache: ClusterCache, replica_id: str,
                 version: str) -> None:
        self.etcd = etcd
        self.keys = keys
        self.cache = cache
        self.replica_id = replica_id
        self.version = version
        self.address = ""
        self._lease = 0

    def replicas(self) -> list[str]:
        return sorted(kv.key.rsplit("/", 1)[-1] for kv in self.cache.under(self.keys.replicas))

    async def run(self) -> None:
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        while True:
            try:
                if self._lease == 0 or await self.etcd.keepalive(self._lease) <= 0:
                    self._lease = await self.etcd.grant(TTL)
                    value = PresenceRecord(self.replica_id, self.address, self.version,
                                           started)
                    await self.etcd.put(self.keys.replica(self.replica_id), value.encode(),
                                        self._lease)
            except EtcdUnavailable as exc:
                _log.warning("replica presence not renewed", error=str(exc))
                self._lease = 0
            await asyncio.sleep(TTL / 3)

    async def withdraw(self) -> None:
        if self._lease:
            try:
                await self.etcd.revoke(self._lease)
            except EtcdUnavailable:
                pass
