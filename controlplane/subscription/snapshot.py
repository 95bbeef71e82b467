"""Snapshots in chunks of at most 1 MiB. The shared part is built once per shared revision and
reused by every agent that connects before the next change (a reconnect storm costs one
build); the node's part (its policies and host policy) is small and built per node."""

from __future__ import annotations

from . import framing
from .state import SubscriptionState

CHUNK_BYTES = 1 << 20
_OVERHEAD = 32   # ServerMessage + SnapshotChunk framing and revision


def chunk(revision: int, framed: list[bytes], limit: int = CHUNK_BYTES) -> list[bytes]:
    messages: list[bytes] = []
    current: list[bytes] = []
    size = _OVERHEAD
    for obj in framed:
        if current and size + len(obj) > limit:
            messages.append(framing.snapshot_message(revision, current))
            current, size = [], _OVERHEAD
        current.append(obj)
        size += len(obj)
    if current:
        messages.append(framing.snapshot_message(revision, current))
    return messages


class Snapshots:
    def __init__(self, state: SubscriptionState, limit: int = CHUNK_BYTES) -> None:
        self.state = state
        self.limit = limit
        self._cached: tuple[int, int, list[bytes]] | None = None

    def shared(self) -> list[bytes]:
        """Chunks of every node, ipcache entry and identity at the state's revision."""
        state = self.state
        key = (state.generation, state.shared_revision)
        if self._cached is None or self._cached[:2] != key:
            self._cached = (*key, chunk(state.shared_revision, list(state.objects.values()),
                                        self.limit))
        return self._cached[2]

    def for_node(self, node: str) -> list[bytes]:
        return chunk(self.state.revision, self.state.node_objects(node), self.limit)
