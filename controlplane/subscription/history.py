"""The recent revisions a replica can replay to a resuming agent, bounded in time and size."""

from __future__ import annotations

import bisect
import itertools
import time
from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class RevisionDelta:
    """One etcd revision as subscribers see it.

    `shared` is the serialized Delta body (revision + shared changes) every subscriber gets;
    `per_node` holds serialized extra changes (policy) for particular nodes. `entry` caches
    the batch-framed shared Delta, since most subscribers receive exactly that.
    """

    revision: int
    shared: bytes
    shared_changes: int
    per_node: dict[str, bytes] = field(default_factory=dict)
    entry: bytes = b""
    at: float = field(default_factory=time.monotonic)

    def body_for(self, node: str) -> bytes | None:
        extra = self.per_node.get(node)
        if extra is None:
            return self.shared if self.shared_changes else None
        return self.shared + extra


class History:
    """Revisions (base, head]; an agent at revision r can resume while base <= r."""

    def __init__(self, window: float, max_entries: int = 200_000) -> None:
        self.window = window
        self.max_entries = max_entries
        self.base = 0
        self._entries: deque[RevisionDelta] = deque()
        self._revisions: deque[int] = deque()

    def restart(self, revision: int) -> None:
        self.base = revision
        self._entries.clear()
        self._revisions.clear()

    def append(self, delta: RevisionDelta) -> None:
        self._entries.append(delta)
        self._revisions.append(delta.revision)
        self.trim(delta.at)

    def trim(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        while self._entries and (now - self._entries[0].at > self.window
                                 or len(self._entries) > self.max_entries):
            old = self._entries.popleft()
            self._revisions.popleft()
            self.base = old.revision

    def covers(self, revision: int) -> bool:
        return revision >= self.base

    def since(self, revision: int) -> list[RevisionDelta]:
        """Every kept revision after `revision` (caller checked `covers`)."""
        start = bisect.bisect_right(self._revisions, revision)
        return list(itertools.islice(self._entries, start, None))

    def __len__(self) -> int:
        return len(self._entries)
