"""Choosing a free ClusterIP and a free frontend id from what the cache knows is claimed.

The choice is only a proposal: the apply transaction creates the claim key only if it is
absent, so two replicas proposing the same value cannot both win; the loser re-reads and
proposes again. ClusterIPs are drawn at random (replicas rarely propose the same one); ids
are the smallest free (a short `service list` ID column, as in Cilium).
"""

from __future__ import annotations

import ipaddress
import random

from bulkhead.errors import Exhausted

MAX_FRONTEND_ID = 65535
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"


class ServiceRange:
    """The ClusterIPs of `--service-cidr`: every host address but the first, which
    Kubernetes gives the API server (`10.96.0.1`); never the network or broadcast address."""

    def __init__(self, cidr: str) -> None:
        self.network = ipaddress.IPv4Network(cidr)
        if self.network.num_addresses < 8:
            raise ValueError(f"--service-cidr {cidr} is too small (at least a /29)")
        self.first = int(self.network.network_address) + 2
        self.last = int(self.network.broadcast_address) - 1

    def __contains__(self, ip: str) -> bool:
        try:
            value = int(ipaddress.IPv4Address(ip))
        except ValueError:
            return False
        return self.first <= value <= self.last

    def describe(self) -> str:
        return (f"{self.network} ({ipaddress.IPv4Address(self.first)}-"
                f"{ipaddress.IPv4Address(self.last)})")

    def pick(self, taken: set[str]) -> str:
        """A free address: a random start, then the next free one."""
        size = self.last - self.first + 1
        if len(taken) >= size:
            raise Exhausted(f"service CIDR {self.network} is full")
        start = random.randrange(size)
        for step in range(size):
            ip = str(ipaddress.IPv4Address(self.first + (start + step) % size))
            if ip not in taken:
                return ip
        raise Exhausted(f"service CIDR {self.network} is full")


def pick_id(taken: set[int]) -> int:
    for ident in range(1, MAX_FRONTEND_ID + 1):
        if ident not in taken:
            return ident
    raise Exhausted(f"every frontend id (1-{MAX_FRONTEND_ID}) is taken")
