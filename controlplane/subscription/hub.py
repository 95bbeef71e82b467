"""Fan-out of each RevisionDelta to every subscriber, and bookmarks for idle streams.

Most subscribers get the very bytes the state framed once (`delta.entry`); a node with its own
policy changes in that revision gets shared body + its part, framed for it alone.

The shared part of a delta is appended once to a `SharedTail`, not to every subscriber's queue;
one flush per interval hands each subscriber the tail and wakes every one with something
queued. A write costs tens of microseconds per subscriber (a syscall, gRPC's
completion round trip, a task wake-up) whatever it carries, so under a steady change rate the
interval bounds writes per subscriber, while an isolated change is flushed at once. The
interval grows with the number of subscribers (`linger_per_subscriber`, capped by
`max_linger`), keeping the fan-out's CPU roughly independent of the change rate.
"""

from __future__ import annotations

import asyncio
import time

from bulkhead import log
from bulkhead.v1 import subscription_pb2 as pb

from . import framing, trace
from .history import RevisionDelta
from .state import SubscriptionState
from .subscriber import Subscriber
from .tail import SharedTail

_log = log.get(__name__)
WAKE_SLICE = 64


class Hub:
    def __init__(self, state: SubscriptionState, *, bookmark_interval: float,
                 linger_per_subscriber: float, max_linger: float) -> None:
        """The intervals come from the fan-out's `FanoutSettings` (their defaults live there)."""
        self.state = state
        self.bookmark_interval = bookmark_interval
        self.linger_per_subscriber = linger_per_subscriber
        self.max_linger = max_linger
        self.subscribers: dict[int, Subscriber] = {}   # several per node are allowed
        self.deltas = 0
        self.resets = 0
        self.tail = SharedTail()
        self._by_node: dict[str, dict[int, Subscriber]] = {}
        self._pending: dict[int, Subscriber] = {}    # queued a delta of its own since the flush
        self._flush: asyncio.Handle | None = None
        self._flushed_at = 0.0
        state.on_delta.append(self.publish)
        state.on_reset.append(self.relisted)

    def add(self, sub: Subscriber) -> None:
        """Call with the subscriber's queue at the state's revision: it then takes only the
        shared deltas published from now on."""
        key = id(sub)
        self.subscribers[key] = sub
        self._by_node.setdefault(sub.node, {})[key] = sub
        sub.tail = self.tail
        sub.tail_seen = len(self.tail)

    def remove(self, sub: Subscriber) -> None:
        key = id(sub)
        self.subscribers.pop(key, None)
        self._pending.pop(key, None)
        streams = self._by_node.get(sub.node)
        if streams is not None:
            streams.pop(key, None)
            if not streams:
                del self._by_node[sub.node]

    @property
    def linger(self) -> float:
        return min(self.max_linger, self.linger_per_subscriber * len(self.subscribers))

    def publish(self, delta: RevisionDelta) -> None:
        """O(nodes with a part of their own), not O(subscribers): the shared part is appended
        to the tail once."""
        self.deltas += 1
        tail = self.tail
        shared = delta.shared_changes > 0
        index = len(tail)
        if shared:
            tail.append(delta.revision, delta.entry)
        for node, extra in delta.per_node.items():
            streams = self._by_node.get(node)
            if not streams:
                continue
            entry = framing.batch_entry(delta.shared + extra)
            for key, sub in list(streams.items()):
                # Its queue must stay in revision order: first the shared deltas before this
                # one, then this revision's own entry instead of the shared one.
                sub.take_shared(index)
                if shared:
                    sub.tail_seen = index + 1
                sub.push_delta(delta.revision, entry, wake=False)
                self._pending[key] = sub
                self._drop_if_slow(sub)
        tail.horizon = delta.revision
        if trace.TRACER is not None:
            trace.TRACER.queued[delta.revision] = time.time()
        if self._flush is None and (self._pending or (shared and self.subscribers)):
            self._schedule()

    def _drop_if_slow(self, sub: Subscriber) -> None:
        if sub.failure is not None and sub.failure[0] == pb.Reset.SLOW_CONSUMER:
            self.resets += 1
            self.remove(sub)
            _log.warning("subscriber reset", node=sub.node, reason="slow consumer")

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self._flushed_at + self.linger - time.monotonic()
        self._flush = (loop.call_later(delay, self.flush) if delay > 0
                       else loop.call_soon(self.flush))

    def flush(self) -> None:
        """Hands every subscriber the shared deltas since the last flush and wakes those with
        something queued."""
        self._flush = None
        self._flushed_at = time.monotonic()
        pending, self._pending = self._pending, {}
        tail = self.tail
        if len(tail):
            for key, sub in list(self.subscribers.items()):
                if sub.tail_seen < len(tail):
                    sub.take_shared()
                    pending[key] = sub
                    self._drop_if_slow(sub)
                sub.tail_seen = 0
            tail.clear()
        tail.horizon = max(tail.horizon, self.state.revision)
        self._wake([sub for sub in pending.values() if sub.failure is None], 0)

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
        self._by_node.clear()
        self._pending.clear()
        self.tail.clear()

    async def bookmarks(self) -> None:
        """Tells idle subscribers the current revision, so their resume tokens stay fresh."""
        tick = max(0.05, min(1.0, self.bookmark_interval / 4))
        while True:
            await asyncio.sleep(tick)
            revision = self.state.revision
            self.tail.horizon = max(self.tail.horizon, revision)
            message = pb.ServerMessage(bookmark=pb.Bookmark(revision=revision))
            raw = message.SerializeToString()
            for sub in list(self.subscribers.values()):
                if sub.idle_for() >= self.bookmark_interval and sub.enqueued_revision < revision:
                    sub.push_message(raw, revision)
