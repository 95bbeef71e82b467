"""The deltas every subscriber receives alike, kept once between two flushes.

Queuing each delta into every subscriber's queue cost the replica's event loop O(subscribers)
per etcd revision — at 1,000 agents most of its time, and the loop lag that delayed its own
watch. Here a delta is appended once; each subscriber takes what it has not taken yet (one
slice and one deque extend) when the hub flushes, or before a delta of its own is queued so
that its queue stays in revision order.
"""

from __future__ import annotations


class SharedTail:
    def __init__(self) -> None:
        self.entries: list[tuple[int, bytes]] = []   # (revision, batch-framed Delta)
        self._ends: list[int] = [0]                  # cumulative sizes, for O(1) byte counts
        self.horizon = 0   # every revision up to here has been queued for whom it concerns

    def __len__(self) -> int:
        return len(self.entries)

    def append(self, revision: int, entry: bytes) -> None:
        self.entries.append((revision, entry))
        self._ends.append(self._ends[-1] + len(entry))

    def size(self, start: int, end: int) -> int:
        """Bytes of entries[start:end]."""
        return self._ends[end] - self._ends[start]

    @property
    def last_revision(self) -> int:
        return self.entries[-1][0] if self.entries else 0

    def clear(self) -> None:
        self.entries = []
        self._ends = [0]
