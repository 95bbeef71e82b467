"""The seam between what the agent receives and the datapath that enforces it.

The subscription client calls a `DatapathSink` with every change in revision order, after its
in-memory state has applied it; the sink acknowledges by returning (an exception = Nack). The
simulated datapath is the in-memory state alone; the BPF datapath's sink is
`nodeagent.reconciler.Reconciler`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bulkhead.v1 import subscription_pb2 as pb


class DatapathSink(Protocol):
    async def apply(self, revision: int, changes: Sequence[pb.Change]) -> None:
        """Puts and removals of nodes, ipcache entries, identities and identity policies."""
        ...

    async def synced(self, revision: int) -> None:
        """Everything up to `revision` was delivered (after a snapshot: stale objects removed)."""
        ...


class NullSink:
    """`--datapath=simulated`: the received state is kept by the client; nothing to program."""

    async def apply(self, revision: int, changes: Sequence[pb.Change]) -> None:
        return None

    async def synced(self, revision: int) -> None:
        return None
