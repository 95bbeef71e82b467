"""Group commit: independent create-only transactions submitted together reach etcd as one.

Every new identity is a transaction of its own (compares and puts on keys no other one touches,
no failure branch). Sent one by one, the control plane pays a client RPC, etcd a raft round and
every replica a watch response per identity; merged, each is paid once per batch. A merged
transaction that fails had at least one false compare, so its parts are retried alone to learn
which — the outcome of every part is exactly what it would have been alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .etcd import Etcd, EtcdUnavailable

# etcd refuses a transaction with more than --max-txn-ops (default 128) compares or operations.
MAX_OPS = 96


@dataclass(eq=False)
class _Part:
    compare: Sequence[Any]
    success: Sequence[Any]
    keys: frozenset[bytes]
    done: asyncio.Future[bool] = field(repr=False)


def _keys(compare: Sequence[Any], success: Sequence[Any]) -> frozenset[bytes]:
    keys = {c.key for c in compare}
    for op in success:
        if op.WhichOneof("request") != "request_put":
            raise ValueError("group commit takes puts only")
        keys.add(op.request_put.key)
    return frozenset(keys)


class GroupCommit:
    """Merges the transactions that wait while an earlier one is in flight.

    At most `max_in_flight` etcd calls run at once; everything submitted meanwhile goes out
    together when one returns, so batches grow with the load while an isolated transaction is
    sent at once. One in flight batches best: on this kind of machine the control plane's CPU,
    not etcd's latency, bounds allocations (1,293/s against 858/s with two in flight).
    """

    def __init__(self, etcd: Etcd, *, max_ops: int = MAX_OPS, max_in_flight: int = 1) -> None:
        self.etcd = etcd
        self.max_ops = max_ops
        self.max_in_flight = max_in_flight
        self._pending: list[_Part] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # merged etcd transactions sent, for tests and metrics
        self.parts = 0

    async def txn(self, compare: Sequence[Any], success: Sequence[Any]) -> bool:
        """Whether every compare held and the puts were applied, as `Etcd.txn(...).succeeded`."""
        if max(len(compare), len(success)) > self.max_ops:
            return (await self.etcd.txn(compare, success)).succeeded
        part = _Part(compare, success, _keys(compare, success),
                     asyncio.get_running_loop().create_future())
        self._pending.append(part)
        self._send()
        return await part.done

    def _send(self) -> None:
        while self._pending and self._in_flight < self.max_in_flight:
            batch = self._take()
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._commit(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[_Part]:
        """The oldest pending parts that fit one transaction without sharing a key."""
        batch: list[_Part] = []
        keys: set[bytes] = set()
        compares = puts = 0
        left: list[_Part] = []
        for part in self._pending:
            fits = (compares + len(part.compare) <= self.max_ops
                    and puts + len(part.success) <= self.max_ops
                    and keys.isdisjoint(part.keys))
            if fits and not part.done.done():  # a cancelled caller's part is dropped
                batch.append(part)
                keys |= part.keys
                compares += len(part.compare)
                puts += len(part.success)
            elif not part.done.done():
                left.append(part)
        self._pending = left
        return batch

    async def _commit(self, batch: list[_Part]) -> None:
        try:
            if len(batch) > 1:
                self.batches += 1
                self.parts += len(batch)
                try:
                    merged = await self.etcd.txn([c for p in batch for c in p.compare],
                                                 [o for p in batch for o in p.success])
                except EtcdUnavailable as exc:
                    for part in batch:
                        _settle(part, exc)
                    return
                except Exception:  # e.g. a smaller --max-txn-ops: learn each part alone
                    merged = None
                if merged is not None and merged.succeeded:
                    for part in batch:
                        _settle(part, True)
                    return
            await asyncio.gather(*(self._alone(part) for part in batch))
        finally:
            self._in_flight -= 1
            self._send()

    async def _alone(self, part: _Part) -> None:
        try:
            _settle(part, (await self.etcd.txn(part.compare, part.success)).succeeded)
        except Exception as exc:
            _settle(part, exc)


def _settle(part: _Part, outcome: bool | BaseException) -> None:
    if part.done.done():
        return
    if isinstance(outcome, BaseException):
        part.done.set_exception(outcome)
    else:
        part.done.set_result(outcome)
