"""One connected agent: its bounded queue and what the control plane knows about it.

The hub only appends here (never awaits), so a subscriber that stops reading costs memory up
to its bound and then is failed with SLOW_CONSUMER; nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from bulkhead.v1 import subscription_pb2 as pb

from . import framing
from .tail import SharedTail

MAX_MESSAGE = 1 << 20


class Subscriber:
    def __init__(self, node: str, *, max_bytes: int, resumes: int = 0,
                 snapshots: int = 0) -> None:
        self.node = node
        self.max_bytes = max_bytes
        self.connected_since = datetime.now(UTC).isoformat(timespec="seconds")
        self.acked_revision = 0
        self.sent_revision = 0     # the newest revision this stream handed to the agent
        self._enqueued = 0
        self.tail: SharedTail | None = None   # the hub's shared deltas; set when added
        self.tail_seen = 0                    # how many of them are in this queue already
        self.resumes = resumes
        self.snapshots = snapshots
        self.last_sent = time.monotonic()
        self.failure: tuple[int, str] | None = None     # (Reset.Reason, detail)
        self.closed = asyncio.Event()
        self._queue: deque[tuple[int, bytes]] = deque()   # (delta revision or 0, bytes)
        self._control_revisions: deque[int] = deque()      # one per control message queued
        self.sending = (0, 0)      # first and last delta revision of the message in flight
        self._queued_bytes = 0
        self._wake = asyncio.Event()

    @property
    def enqueued_revision(self) -> int:
        """The newest revision queued for this agent, shared deltas not yet taken included."""
        tail = self.tail
        if tail is not None and self.tail_seen < len(tail):
            return max(self._enqueued, tail.last_revision)
        return self._enqueued

    @property
    def lag(self) -> int:
        return max(0, self.enqueued_revision - self.acked_revision)

    @property
    def covered_revision(self) -> int:
        """The agent has applied everything concerning it up to here (convergence waits):
        once it acked all that was queued for it, every revision up to the hub's horizon held
        nothing more for it."""
        if self.acked_revision < self.enqueued_revision:
            return self.acked_revision
        return max(self.acked_revision, self.tail.horizon if self.tail is not None else 0)

    # -- producers (never block) -------------------------------------------------------------
    def push_delta(self, revision: int, entry: bytes, wake: bool = True) -> None:
        """Queues a delta; `wake=False` leaves the sending to the hub's next flush, so
        several deltas go out as one DeltaBatch in one write."""
        if self.failure is not None:
            return
        if self._queued_bytes + len(entry) > self.max_bytes:
            self.fail(pb.Reset.SLOW_CONSUMER,
                      f"queue over {self.max_bytes} bytes; subscribe again")
            return
        self._queue.append((revision, entry))
        self._queued_bytes += len(entry)
        self._enqueued = max(self._enqueued, revision)
        if wake:
            self._wake.set()

    def take_shared(self, end: int | None = None) -> None:
        """Moves the hub's shared deltas it has not taken yet (up to `end`) into the queue."""
        tail = self.tail
        if tail is None:
            return
        end = len(tail) if end is None else end
        start = self.tail_seen
        if end <= start:
            return
        self.tail_seen = end
        if self.failure is not None:
            return
        size = tail.size(start, end)
        if self._queued_bytes + size > self.max_bytes:
            self.fail(pb.Reset.SLOW_CONSUMER,
                      f"queue over {self.max_bytes} bytes; subscribe again")
            return
        self._queue.extend(tail.entries[start:end])
        self._queued_bytes += size
        self._enqueued = max(self._enqueued, tail.entries[end - 1][0])

    def wake(self) -> None:
        self._wake.set()

    def push_message(self, message: bytes, revision: int = 0) -> None:
        """Control messages (welcome, snapshot, synced, bookmark) are not bounded."""
        if self.failure is not None:
            return
        self._queue.append((0, message))
        self._control_revisions.append(revision)
        self._enqueued = max(self._enqueued, revision)
        self._wake.set()

    def fail(self, reason: int, detail: str) -> None:
        """Ends the stream: queued data is dropped, the agent is told why if it still reads."""
        if self.failure is not None:
            return
        self.failure = (reason, detail)
        self._queue.clear()
        self._control_revisions.clear()
        self._queued_bytes = 0
        reset = pb.Reset(reason=pb.Reset.Reason.Name(reason), detail=detail)
        self._queue.append((0, pb.ServerMessage(reset=reset).SerializeToString()))
        self._control_revisions.append(0)
        self._wake.set()
        self.closed.set()

    def idle_for(self) -> float:
        if self._queue or (self.tail is not None and self.tail_seen < len(self.tail)):
            return 0.0
        return time.monotonic() - self.last_sent

    def resume_at(self, revision: int) -> None:
        """The agent resumes from its token: it holds `revision` already (acked elsewhere)."""
        self.acked_revision = revision
        self.sent_revision = max(self.sent_revision, revision)

    def ack(self, revision: int) -> bool:
        """Records an ack; False when it moves nothing. The caller refuses an ack above
        `sent_revision` first: the agent cannot have applied what it was never sent."""
        if revision <= self.acked_revision:
            return False
        self.acked_revision = revision
        return True

    # -- consumer ----------------------------------------------------------------------------
    async def messages(self) -> AsyncIterator[bytes]:
        """Serialized ServerMessages; consecutive deltas are batched up to 1 MiB."""
        while True:
            while not self._queue:
                if self.failure is not None:
                    return
                self._wake.clear()
                await self._wake.wait()
            first, data = self._queue.popleft()
            if not first:
                self.sending = (0, 0)
                self.sent_revision = max(self.sent_revision, self._control_revisions.popleft())
                self.last_sent = time.monotonic()
                yield data
                continue
            entries = [data]
            size = len(data)
            last = first
            while self._queue and self._queue[0][0] and size + len(self._queue[0][1]) \
                    < MAX_MESSAGE:
                last, entry = self._queue.popleft()
                entries.append(entry)
                size += len(entry)
            self._queued_bytes -= size
            self.sending = (first, last)
            self.sent_revision = max(self.sent_revision, last)
            self.last_sent = time.monotonic()
            yield framing.batch_message(entries)
