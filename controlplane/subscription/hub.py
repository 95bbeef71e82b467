"""Fan-out of each RevisionDelta to every subscriber, and bookmarks for idle streams.

Most subscribers get the very bytes the state framed once (`delta.entry`); a node with its own
policy changes in that revision gets shared body + its part, framed for it alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bulkhead import log
from bulkhead.v1 import subscription_pb2 as pb

from . import framing
from .history import RevisionDelta
from .state import SubscriptionState
from .subscriber import Subscriber

_log = log.get(__name__)


class Hub:
    def __init__(self, state: SubscriptionState, bookmark_interval: float = 30.0) -> None:
        self.state = state
        self.bookmark_interval = bookmark_interval
        self.subscribers: dict[int, Subscriber] = {}   # several per node are allowed
        self.deltas = 0
        self.resets = 0
        self.on_skip: list[Callable[[Subscriber], None]] = []
        state.on_delta.append(self.publish)
        state.on_reset.append(self.relisted)

    def add(self, sub: Subscriber) -> None:
        self.subscribers[id(sub)] = sub

    def remove(self, sub: Subscriber) -> None:
        self.subscribers.pop(id(sub), None)

    def publish(self, delta: RevisionDelta) -> None:
        self.deltas += 1
        for sub in list(self.subscribers.values()):
            node = sub.node
            extra = delta.per_node.get(node)
            if extra is None:
                if delta.shared_changes:
                    sub.push_delta(delta.revision, delta.entry)
                else:
                    sub.skipped_revision = delta.revision
                    for callback in self.on_skip:
                        callback(sub)
            else:
                sub.push_delta(delta.revision, framing.batch_entry(delta.shared + extra))
            if sub.failure is not None and sub.failure[0] == pb.Reset.SLOW_CONSUMER:
                self.resets += 1
                self.remove(sub)
                _log.warning("subscriber reset", node=node, reason="slow consumer")

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
