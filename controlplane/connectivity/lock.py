"""The cluster's one connectivity-test lock: two `bulkhead connectivity test` runs at once
would create and delete each other's test pods and policies in `bulkhead-test`.

A run holds the key `connectivity/lock` (docs/etcd-layout.md) for as long as its call to
HoldTestLock stays open. The key is created only if absent, on a lease of its own that the
replica serving the call keeps alive: the call ending (the run done, its client gone) deletes
the key and revokes the lease; a replica that dies stops renewing it and it expires after TTL
seconds. No other lock in the project: identities, services and leaders use create-if-absent
transactions the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc

from bulkhead import log
from bulkhead.errors import FailedPrecondition, FieldViolation, Invalid, Unavailable
from controlplane.records.codec import LockRecord, RecordError
from controlplane.store import etcd as ops
from controlplane.store.etcd import KV, Etcd, EtcdUnavailable
from controlplane.store.keys import Keys

TTL = 15
"""Seconds the lock outlives a replica that died holding it."""
MAX_HOLDER = 200
_log = log.get(__name__)


def _since(record: LockRecord) -> str:
    return datetime.fromtimestamp(record.since_ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _holder(found: list[KV]) -> LockRecord:
    """Who holds the lock, as far as its record says (it may have gone meanwhile)."""
    try:
        return LockRecord.decode(found[0].value)
    except (IndexError, RecordError):
        return LockRecord("an unknown run", 0, "unknown")


class ConnectivityLock:

    def __init__(self, etcd: Etcd, keys: Keys, replica_id: str, ttl: int = TTL) -> None:
        self.etcd = etcd
        self.key = keys.connectivity_lock
        self.replica_id = replica_id
        self.ttl = ttl

    @contextlib.asynccontextmanager
    async def held(self, holder: str) -> AsyncIterator[tuple[LockRecord, asyncio.Task[None]]]:
        """Takes the lock for `holder` for the block; yields who holds it and the task that
        keeps its lease alive (it ends with Unavailable if the lease is lost). FailedPrecondition
        naming the holder and since when while another run holds it."""
        if not holder.strip():
            raise Invalid([FieldViolation("holder", "required: who runs the test")])
        if len(holder) > MAX_HOLDER:
            raise Invalid([FieldViolation("holder", f"at most {MAX_HOLDER} characters")])
        me = LockRecord(holder, time.time_ns(), self.replica_id)
        lease = await self.etcd.grant(self.ttl)
        try:
            taken = await self.etcd.txn([ops.version_is(self.key, 0)],
                                        [ops.put(self.key, me.encode(), lease)],
                                        [ops.get(self.key)])
        except BaseException:
            await self._revoke(lease)
            raise
        if not taken.succeeded:
            await self._revoke(lease)
            other = _holder(taken.range_kvs(0))
            raise FailedPrecondition(
                f"another connectivity test is running: held by {other.holder} since "
                f"{_since(other)} (replica {other.replica}); it is released when that run "
                f"ends or its client goes away ({self.ttl} s after its replica does)")
        _log.info("connectivity test lock taken", holder=holder)
        keeper = asyncio.create_task(self._keep(lease), name="connectivity-lock")
        try:
            yield me, keeper
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Unavailable):
                await keeper
            await self._release(me, lease)

    async def _keep(self, lease: int) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                alive = await self.etcd.keepalive(lease)
            except EtcdUnavailable as exc:
                _log.warning("connectivity test lock not renewed", error=str(exc))
                continue
            if alive <= 0:
                raise Unavailable("the connectivity test lock was lost (its lease expired: etcd "
                              "was unreachable for longer than its TTL)")

    async def _release(self, me: LockRecord, lease: int) -> None:
        """Deletes the key if it is still ours, then revokes the lease (both, so a lost
        revoke still leaves the key gone); errors only logged: the lease expires anyway."""
        try:
            await self.etcd.txn([ops.value_is(self.key, me.encode())], [ops.delete(self.key)])
        except (EtcdUnavailable, grpc.RpcError) as exc:
            _log.warning("connectivity test lock not deleted", error=str(exc))
        await self._revoke(lease)
        _log.info("connectivity test lock released", holder=me.holder)

    async def _revoke(self, lease: int) -> None:
        try:
            await self.etcd.revoke(lease)
        except (EtcdUnavailable, grpc.RpcError) as exc:
            _log.warning("connectivity test lease not revoked", error=str(exc))
