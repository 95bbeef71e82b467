"""The agent's side of host policies: this node's resolved host policy arrives through the
subscription like every other piece of its state (`Change.host_policy`, sent to this node
only, in every snapshot and whenever it changes), and the reconciler writes it into the host
firewall's maps with the revision it acks — so `policy apply --wait` covers host policies.

Whatever the policy says, the control plane's addresses are exempt (the escape hatch): a host
policy can never cut the agent off the control plane that would deliver its fix. When a write
fails, the last applied policy stays in force (as every other map does)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping, Sequence

from bulkhead.v1 import subscription_pb2 as pb
from bulkhead.v1 import types_pb2
from nodeagent.datapath.hostfw import HostDesired, desired_of
from nodeagent.datapath.layout import Direction

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


class HostPolicyView:
    """What the host firewall should hold, from the received host policy and nodes, and what
    it was last given (`bulkhead agent status`)."""

    def __init__(self, node: str, controlplane: Sequence[str],
                 services: Sequence[tuple[str, int]] = ()) -> None:
        self.node = node
        self.controlplane = list(controlplane)
        self.services = list(services)
        """The node's own services for its pods (the agent's DNS server): exempt too."""
        self.exempt: list[tuple[str, int, str]] = []
        self.applied: HostDesired | None = None
        self.revision = 0
        """The subscription revision the applied host policy was written at."""
        self.entries = 0
        self.last_error = ""

    async def prepare(self) -> None:
        """Resolve the exempt addresses (before the first snapshot is written)."""
        found = await asyncio.to_thread(exempt_addresses, self.controlplane)
        self.exempt = found + [(ip, port, proto) for ip, port in self.services
                               for proto in ("UDP", "TCP")]

    def always_allowed(self) -> list[str]:
        control = [f"TCP {ip}:{port} (control plane)" for ip, port, _ in self.exempt
                   if (ip, port) not in self.services]
        return (control + [f"UDP/TCP {ip}:{port} (the agent's DNS for pods)"
                           for ip, port in self.services] + [TUNNEL, REPLIES])

    def desired(self, policy: pb.NodeHostPolicy | None,
                nodes: Mapping[str, types_pb2.Node]) -> HostDesired:
        """The maps' content for `policy` (None: not received, nothing enforced)."""
        policy = policy if policy is not None else pb.NodeHostPolicy(node=self.node)
        return desired_of(
            [(Direction.INGRESS if e.direction == pb.PolicyEntry.INGRESS else
              Direction.EGRESS, e.peer, e.peer_node, e.protocol, e.port_lo, e.port_hi,
              e.verdict == pb.PolicyEntry.DENY) for e in policy.entries],
            policy.ingress_enforced, policy.egress_enforced,
            [(n.name, n.underlay_ip, n.node_id) for n in nodes.values()], self.node,
            self.exempt)

    def written(self, desired: HostDesired, revision: int) -> None:
        self.applied, self.revision, self.last_error = desired, revision, ""
        self.entries = len(desired.entries)
