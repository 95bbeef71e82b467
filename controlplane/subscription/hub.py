"""Fan-out of each RevisionDelta to every subscriber, and bookmarks for idle streams.

Most subscribers get the very bytes the state framed once (`delta.entry`); a node with its own
policy changes in that revision gets shared body + its part, framed for it alone.

Deltas are queued without waking anyone; one flush per interval wakes every subscriber with
something queued. A write costs tens of microseconds per subscriber (a syscall, gRPC's
completion round trip, a task wake-up) whatever it carries, so under a steady change rate the
interval bounds writes per subscriber, while an isolated change is flushed at once. The
interval grows with the number of subscribers (`linger_per_subscriber`, capped by
`max_linger`), keeping the fan-out's CPU roughly independent of the change rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from bulkhead import log
from bulkhead.v1 import subscription_pb2 as pb

from . import framing, trace
from .history import RevisionDelta
from .state import SubscriptionState
from .subscriber import Subscriber

_log = log.get(__name__)
WAKE_SLICE = 64


class Hub:
    def __init__(self, state: SubscriptionState, bookmark_interval: float = 30.0, *,
                 linger_per_subscriber: float = 100e-6, max_linger: float = 0.1) -> None:
        self.state = state
        self.bookmark_interval = bookmark_interval
        self.linger_per_subscriber = linger_per_subscriber
        self.max_linger = max_linger
        self.subscribers: dict[int, Subscriber] = {}   # several per node are allowed
        self.deltas = 0
        self.resets = 0
        self.flushes = 0
        self._pending: dict[int, Subscriber] = {}    # queued a delta since the last flush
        self._flush: asyncio.Handle | None = None
        self._flushed_at = 0.0
        self.on_skip: list[Callable[[Subscriber], None]] = []
        state.on_delta.append(self.publish)
        state.on_reset.append(self.relisted)

    def add(self, sub: Subscriber) -> None:
        self.subscribers[id(sub)] = sub

    def remove(self, sub: Subscriber) -> None:
        self.subscribers.pop(id(sub), None)
        self._pending.pop(id(sub), None)

    @property
    def linger(self) -> float:
        return min(self.max_linger, self.linger_per_subscriber * len(self.subscribers))

    def publish(self, delta: RevisionDelta) -> None:
        self.deltas += 1
        pending = self._pending
        for key, sub in list(self.subscribers.items()):
            node = sub.node
            extra = delta.per_node.get(node)
            if extra is None:
                if delta.shared_changes:
                    sub.push_delta(delta.revision, delta.entry, wake=False)
                    pending[key] = sub
                else:
                    sub.skipped_revision = delta.revision
                    for callback in self.on_skip:
                        callback(sub)
            else:
                sub.push_delta(delta.revision, framing.batch_entry(delta.shared + extra),
                               wake=False)
                pending[key] = sub
            if sub.failure is not None and sub.failure[0] == pb.Reset.SLOW_CONSUMER:
                self.resets += 1
                self.remove(sub)
                _log.warning("subscriber reset", node=node, reason="slow consumer")
        if trace.TRACER is not None:
            trace.TRACER.queued[delta.revision] = time.time()
        if pending and self._flush is None:
            self._schedule()

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self._flushed_at + self.linger - time.monotonic()
        self._flush = (loop.call_later(delay, self.flush) if delay > 0
                       else loop.call_soon(self.flush))

    def flush(self) -> None:
        """Wakes every subscriber that has deltas queued since the last flush."""
        self._flush = None
        self._flushed_at = time.monotonic()
        pending, self._pending = self._pending, {}
        self.flushes += 1
        self._wake(list(pending.values()), 0)

    def _wake(self, subs: list[Subscriber], start: int) -> None:
        """Wakes `WAKE_SLICE` senders per event-loop iteration: each write costs tens of
        microseconds, so waking 1,000 at once made one iteration last 100-400 ms, and the
        etcd watch, which needs a few iterations per response, fell seconds behind."""
        end = start + WAKE_SLICE
        for sub in subs[start:end]:
            sub.wake()
        if end < len(subs):
            asyncio.get_running_loop().call_soon(self._wake, subs, end)

    def relisted(self) -> None:
        for sub in list(self.subscribers.values()):
            sub.fail(pb.Reset.RELISTED, "the replica relisted etcd; take a new snapshot")
        self.subscribers.clear()

    async def bookmarks(self) -> None:
        """Tells idle subscribers the current revision, so their resume tokens stay fresh."""
        tick = max(0.05, min(1.0, self.bookmark_interval / 4))
        while True:
            await asyncio.sleep(tick)
            revision = self.state.revision
            message = pb.ServerMessage(bookmark=pb.Bookmark(revision=revision))
            raw = message.SerializeToString()
            for sub in list(self.subscribers.values()):
                if sub.idle_for() >= self.bookmark_interval and sub.enqueued_revision < revision:
                    sub.push_message(raw, revision)
