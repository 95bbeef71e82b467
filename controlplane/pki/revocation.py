"""The deny-list of revoked certificate serials, as every replica sees it.

Each replica lists the etcd prefix once and follows it with a watch; a serial added by any
replica (`RevokeNode`, an admin deleting a node) is refused here within a watch round trip,
and the streams of that certificate are cut (`Revocations.cut` events, awaited by the
authorization layer for every streaming call).
"""

from __future__ import annotations

import asyncio
import contextlib

from bulkhead import log
from controlplane.pki.keys import PkiKeys
from controlplane.store.etcd import Etcd

_log = log.get(__name__)


class Revocations:
    def __init__(self, etcd: Etcd, keys: PkiKeys) -> None:
        self.etcd = etcd
        self.keys = keys
        self.serials: set[int] = set()
        self._cuts: dict[int, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None

    def revoked(self, serial: int) -> bool:
        return serial in self.serials

    def cut(self, serial: int) -> asyncio.Event:
        """Set once `serial` is revoked (a streaming call waits on it to end itself)."""
        event = self._cuts.get(serial)
        if event is None:
            event = self._cuts[serial] = asyncio.Event()
            if serial in self.serials:
                event.set()
        return event

    def release(self, serial: int, event: asyncio.Event) -> None:
        """Forget the event when no call waits on it (bounded by open streams)."""
        if self._cuts.get(serial) is event and not event.is_set():
            del self._cuts[serial]

    def _add(self, key: bytes) -> None:
        try:
            serial = int(key.decode().rsplit("/", 1)[1], 16)
        except ValueError:
            return
        if serial not in self.serials:
            self.serials.add(serial)
            _log.info("certificate revoked", serial=f"{serial:x}")
        event = self._cuts.pop(serial, None)
        if event is not None:
            event.set()

    async def start(self) -> None:
        kvs, revision, _ = await self.etcd.range(self.keys.revoked)
        for kv in kvs:
            self._add(kv.key.encode())
        self._task = asyncio.create_task(self._follow(revision + 1), name="revocations")

    async def _follow(self, start: int) -> None:
        while True:
            call = self.etcd.watch(self.keys.revoked, start)
            try:
                async for response in call:
                    for event in response.events:
                        if event.type == 0:  # PUT; a revocation is never taken back
                            self._add(event.kv.key)
                    start = max(start, response.header.revision + 1)
            except asyncio.CancelledError:
                call.cancel()
                raise
            except Exception as exc:  # etcd away: list again and follow on
                _log.warning("revocation watch failed; retrying", error=str(exc))
                call.cancel()
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    kvs, revision, _ = await self.etcd.range(self.keys.revoked)
                    for kv in kvs:
                        self._add(kv.key.encode())
                    start = revision + 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
