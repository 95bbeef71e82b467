"""The deny-list of revoked certificate serials, as every replica sees it.

Each replica lists the etcd prefix once and follows it with a watch; a serial added by any
replica (`RevokeNode`, an admin deleting a node) is refused here within a watch round trip,
and the streams of that certificate are cut (`Revocations.cut` events, awaited by the
authorization layer for every streaming call).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from bulkhead import log
from controlplane.pki.keys import PkiKeys
from controlplane.store.etcd import Etcd

_log = log.get(__name__)


@dataclass
class _Open:
    """Streams open with one certificate: their cut event, and who the certificate is."""

    event: asyncio.Event
    node: str
    issued: float
    refs: int = 0


NODE_MARK = "node:"
"""A deny-list key `revoked/node:NAME` (value: the unix time of the revocation) refuses every
certificate of node NAME issued up to then, including one a renewal produced while the
revocation was listing the node's serials."""


class Revocations:
    def __init__(self, etcd: Etcd, keys: PkiKeys) -> None:
        self.etcd = etcd
        self.keys = keys
        self.serials: set[int] = set()
        self.nodes: dict[str, float] = {}
        self._open: dict[int, _Open] = {}
        self._task: asyncio.Task[None] | None = None

    def revoked(self, serial: int, node: str = "", issued: float = 0.0) -> bool:
        """Whether the certificate `serial` (of node `node` when it is a node's, issued at
        `issued`) may no longer be used."""
        if serial in self.serials:
            return True
        return bool(node) and node in self.nodes and issued <= self.nodes[node]

    def cut(self, serial: int, node: str = "", issued: float = 0.0) -> asyncio.Event:
        """Set once the certificate is revoked (a streaming call waits on it to end itself);
        give it back with `release` when the call ends."""
        held = self._open.get(serial)
        if held is None:
            held = self._open[serial] = _Open(asyncio.Event(), node, issued)
            if self.revoked(serial, node, issued):
                held.event.set()
        held.refs += 1
        return held.event

    def release(self, serial: int) -> None:
        """One call with this certificate ended (bounded by open streams)."""
        held = self._open.get(serial)
        if held is not None:
            held.refs -= 1
            if held.refs <= 0:
                del self._open[serial]

    def _add(self, key: bytes, value: bytes) -> None:
        last = key.decode().rsplit("/", 1)[1]
        if last.startswith(NODE_MARK):
            node = last.removeprefix(NODE_MARK)
            try:
                at = float(value)
            except ValueError:
                return
            self.nodes[node] = max(at, self.nodes.get(node, 0.0))
            _log.info("node certificates revoked", node=node)
            for held in self._open.values():
                if held.node == node and held.issued <= at:
                    held.event.set()
            return
        try:
            serial = int(last, 16)
        except ValueError:
            return
        if serial not in self.serials:
            self.serials.add(serial)
            _log.info("certificate revoked", serial=f"{serial:x}")
        stream = self._open.get(serial)
        if stream is not None:
            stream.event.set()

    async def start(self) -> None:
        kvs, revision, _ = await self.etcd.range(self.keys.revoked)
        for kv in kvs:
            self._add(kv.key.encode(), kv.value)
        self._task = asyncio.create_task(self._follow(revision + 1), name="revocations")

    async def _follow(self, start: int) -> None:
        while True:
            call = self.etcd.watch(self.keys.revoked, start)
            try:
                async for response in call:
                    for event in response.events:
                        if event.type == 0:  # PUT; a revocation is never taken back
                            self._add(event.kv.key, event.kv.value)
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
                        self._add(kv.key.encode(), kv.value)
                    start = revision + 1

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
