"""Convergence: wait until every node hosting some identities has acked a revision."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bulkhead.errors import FieldViolation, Invalid
from controlplane.policy.hosts import HOST_IDENTITY
from controlplane.records.codec import NodeStatus

from .fanout import Fanout

POLL = 0.05


@dataclass
class WaitResult:
    converged: bool
    nodes: list[str]
    pending: list[NodeStatus] = field(default_factory=list)
    covered: list[NodeStatus] = field(default_factory=list)
    """Converged without an ack of the revision: nothing up to it concerned them."""


class ConvergenceWaiter:
    """Reads acks from the status every replica publishes, so it answers on any replica."""

    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout

    def nodes_for(self, identities: set[int]) -> set[str]:
        """The nodes hosting `identities`; every node when empty or when the host identity is
        among them (a host policy changed: the nodes it concerns get it, the rest are covered
        by acks of later revisions)."""
        prefix = self.fanout.keys.nodes
        if identities and HOST_IDENTITY not in identities:
            return self.fanout.state.nodes_hosting(identities)
        every = {kv.key[len(prefix):] for kv in self.fanout.cache.under(prefix)}
        if not identities:
            return every
        return every | self.fanout.state.nodes_hosting(identities - {HOST_IDENTITY})

    async def wait(self, revision: int, identities: set[int], timeout: float) -> WaitResult:
        if revision <= 0:
            raise Invalid([FieldViolation("revision", "must be positive")])
        if not 0 <= timeout <= 3600:
            raise Invalid([FieldViolation("timeout_seconds", "must be between 0 and 3600")])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout or 30.0)
        await self.fanout.cache.wait_for(revision, timeout=max(0.0, deadline - loop.time()))
        while True:
            nodes = self.nodes_for(identities)
            statuses = self.fanout.statuses()
            concerned = [statuses.get(n) or NodeStatus(n) for n in sorted(nodes)]
            pending = [s for s in concerned if s.covered_revision < revision]
            if not pending:
                return WaitResult(True, sorted(nodes), covered=[
                    s for s in concerned if s.acked_revision < revision])
            if loop.time() >= deadline:
                return WaitResult(False, sorted(nodes), pending)
            await asyncio.sleep(POLL)
