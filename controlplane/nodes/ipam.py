"""Pod CIDRs for nodes, carved from the cluster pool, and pod IPs inside a node's CIDR."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterPool:
    network: ipaddress.IPv4Network
    node_mask: int

    @staticmethod
    def parse(cidr: str, node_mask: int) -> ClusterPool:
        network = ipaddress.IPv4Network(cidr)
        if not network.prefixlen <= node_mask <= 30:
            raise ValueError(f"node mask /{node_mask} must be between /{network.prefixlen} and /30")
        return ClusterPool(network, node_mask)

    def free_cidr(self, used: Container[str]) -> str | None:
        for subnet in self.network.subnets(new_prefix=self.node_mask):
            if str(subnet) not in used:
                return str(subnet)
        return None


def gateway(pod_cidr: str) -> ipaddress.IPv4Address:
    """The first address of a node's pod CIDR is the pods' gateway (the node's side)."""
    return ipaddress.IPv4Network(pod_cidr).network_address + 1


def assignable(pod_cidr: str) -> Iterator[ipaddress.IPv4Address]:
    """Pod addresses: everything but network, gateway and broadcast."""
    network = ipaddress.IPv4Network(pod_cidr)
    gw = gateway(pod_cidr)
    for host in network.hosts():
        if host != gw:
            yield host


def free_ip(pod_cidr: str, taken: Callable[[str], bool]) -> str | None:
    """The first assignable address for which `taken` is false."""
    for host in assignable(pod_cidr):
        if not taken(str(host)):
            return str(host)
    return None


def is_assignable(ip: str, pod_cidr: str) -> bool:
    address = ipaddress.IPv4Address(ip)
    network = ipaddress.IPv4Network(pod_cidr)
    return (address in network and address not in (network.network_address,
            network.broadcast_address, gateway(pod_cidr)))
