"""The agent keeps its node's lease alive itself, through whichever replica answers in time.

Why not leave it to the replica that holds the subscription stream: a replica that stalls
(SIGSTOP, an event loop blocked by one huge request) keeps its TCP connections open and answers
nothing, so the stream looks healthy while the lease runs out and etcd deletes the node with its
endpoints and ipcache entries. A Heartbeat with a short deadline every third of the TTL notices
the stall within a fraction of the TTL, and renews through another replica before it matters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc

from bulkhead import log
from bulkhead.v1 import node_pb2, node_pb2_grpc

_log = log.get(__name__)

CAPABILITY = "lease:agent"
"""Said in Hello: this agent renews its node's lease, the replica need not."""

DEFAULT_TTL = 15.0
MIN_DEADLINE = 1.0


@dataclass(frozen=True)
class Renewal:
    address: str | None
    """The replica that renewed the lease; None when none answered in time."""
    expired: bool = False
    """The lease is gone (etcd removed the node): the node must register again."""


class LeaseKeeper:
    def __init__(self, node: str, addresses: Sequence[str],
                 channel: Callable[[str], grpc.aio.Channel]) -> None:
        self.node = node
        self.addresses = list(addresses)
        self.channel = channel
        self.ttl = DEFAULT_TTL
        self.renewals = 0
        self.failovers = 0
        """Renewals that the preferred replica did not answer and another one did."""

    @property
    def period(self) -> float:
        """How often to renew: three chances per TTL."""
        return max(0.5, self.ttl / 3)

    @property
    def deadline(self) -> float:
        """How long one replica may take before the next is asked: half a period, so two
        replicas can be tried before the next renewal is due."""
        return max(MIN_DEADLINE, self.period / 2)

    async def renew(self, preferred: str | None) -> Renewal:
        """One renewal: `preferred` first, then every other address in turn."""
        order = [a for a in self.addresses if a == preferred]
        order += [a for a in self.addresses if a != preferred]
        request = node_pb2.HeartbeatRequest(name=self.node)
        for address in order:
            stub = node_pb2_grpc.NodeServiceStub(self.channel(address))
            try:
                response = await stub.Heartbeat(request, timeout=self.deadline)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return Renewal(address, expired=True)
                _log.info("heartbeat not answered; trying the next replica", address=address,
                          error=f"{exc.code().name}: {exc.details()}")
                continue
            if response.ttl_seconds > 0:
                self.ttl = float(response.ttl_seconds)
            self.renewals += 1
            if preferred is not None and address != preferred:
                self.failovers += 1
            return Renewal(address)
        return Renewal(None)
