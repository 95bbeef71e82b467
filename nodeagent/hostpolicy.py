"""The agent's side of host policies: fetch this node's resolved host policy from the control
plane and keep the host firewall's maps equal to it.

Fetched (`HostPolicyService.ResolveHost`, which a node may call for itself only) every
`interval` seconds; the answer is small (nodes and host policies are few). Whatever it says,
the control plane's addresses are exempt (the escape hatch): a host policy can never cut the
agent off the control plane that would deliver its fix. When a fetch fails, the last applied
policy stays in force (as every other map does while the agent cannot reach the control
plane)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

from bulkhead import log
from bulkhead.v1 import hostpolicy_pb2 as pb
from bulkhead.v1 import types_pb2
from nodeagent.datapath.hostfw import HostDesired, desired_of
from nodeagent.datapath.layout import Direction

_log = log.get(__name__)
_PROTOCOLS = {"ANY": 0, "ICMP": 1, "TCP": 6, "UDP": 17, "ICMPV6": 58, "SCTP": 132}
TUNNEL = "UDP 8472 (VXLAN tunnel)"
REPLIES = "replies of tracked connections"


def exempt_addresses(controlplane: Sequence[str]) -> list[tuple[str, int, str]]:
    """The control plane's HOST:PORT addresses as (IPv4, port, "TCP"); names resolved."""
    out: list[tuple[str, int, str]] = []
    for address in controlplane:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        try:
            ips = [host] if ipaddress.ip_address(host).version == 4 else []
        except ValueError:
            try:
                ips = sorted({str(info[4][0]) for info in socket.getaddrinfo(
                    host, int(port), socket.AF_INET, socket.SOCK_STREAM)})
            except (OSError, ValueError):
                ips = []
        out += [(ip, int(port), "TCP") for ip in ips if port.isdigit()]
    return sorted(set(out))


class HostPolicyLoop:
    def __init__(self, node: str, controlplane: Sequence[str],
                 fetch: Callable[[], Awaitable[pb.ResolveHostResponse]],
                 nodes: Callable[[], dict[str, Any]],
                 apply: Callable[[HostDesired], Awaitable[int]], interval: float = 1.0,
                 services: Sequence[tuple[str, int]] = ()) -> None:
        self.node = node
        self.services = list(services)
        """The node's own services for its pods (the agent's DNS server): exempt too."""
        self.controlplane = list(controlplane)
        self.fetch = fetch
        self.nodes = nodes
        self.apply = apply
        self.interval = interval
        self.exempt: list[tuple[str, int, str]] = []
        self.applied: HostDesired | None = None
        self.revision = 0
        self.entries = 0
        self.last_error = ""

    def always_allowed(self) -> list[str]:
        control = [f"TCP {ip}:{port} (control plane)" for ip, port, _ in self.exempt
                   if (ip, port) not in self.services]
        return (control + [f"UDP/TCP {ip}:{port} (the agent's DNS for pods)"
                           for ip, port in self.services] + [TUNNEL, REPLIES])

    async def run(self) -> None:
        found = await asyncio.to_thread(exempt_addresses, self.controlplane)
        self.exempt = found + [(ip, port, proto) for ip, port in self.services
                               for proto in ("UDP", "TCP")]
        while True:
            await self.once()
            await asyncio.sleep(self.interval)

    async def once(self) -> None:
        try:
            found = await self.fetch()
        except grpc.aio.AioRpcError as exc:
            self.last_error = f"{exc.code().name}: {exc.details()}"
            return
        nodes: dict[str, types_pb2.Node] = self.nodes()
        desired = desired_of(
            [(Direction.INGRESS if e.direction == "ingress" else Direction.EGRESS, e.peer,
              e.peer_node, _PROTOCOLS.get(e.protocol, 0), e.port_lo, e.port_hi,
              e.verdict == "deny") for e in found.entries],
            found.ingress_enforced, found.egress_enforced,
            [(n.name, n.underlay_ip, n.node_id) for n in nodes.values()], self.node,
            self.exempt)
        if desired == self.applied:
            self.revision, self.last_error = found.revision, ""
            return
        try:
            await self.apply(desired)
        except Exception as exc:   # the last applied policy stays in force
            self.last_error = f"sync failed: {exc}"
            _log.error("host policy sync failed", error=str(exc))
            return
        self.applied, self.revision, self.last_error = desired, found.revision, ""
        self.entries = len(desired.entries)
        _log.info("host policy applied", ingress=found.ingress_enforced,
                  egress=found.egress_enforced, entries=len(desired.entries),
                  revision=found.revision)
