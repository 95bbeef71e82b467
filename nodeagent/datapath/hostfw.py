"""The host firewall: host policies (nodeSelector) enforced on the node's underlay interface
by `host_in`/`host_out` (bpf/datapath.c), with maps of their own (the endpoint maps' layouts
are untouched).

What it is given (`HostDesired`) is the node's resolved host policy, flattened: entries keyed
by the peer node's id for `fromNodes`/`toNodes` (0 for every other peer), the address of every
node (so a packet's source names its node), and the exempt addresses — the control plane's —
which no host policy can block (the escape hatch; the VXLAN port is exempt in the program)."""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nodeagent.datapath import netlink
from nodeagent.datapath.layout import POLICY_KEY_SIZE, POLICY_VAL, Direction
from nodeagent.datapath.models import PolicyEntry
from nodeagent.datapath.policykeys import entry_keys
from nodeagent.datapath.rawmap import RawMap

HOST_F_INGRESS = 1
HOST_F_EGRESS = 2
PROGRAMS = (("ingress", "host_in"), ("egress", "host_out"))
_U32 = struct.Struct("<I")
_PEER = struct.Struct("<II")
_EXEMPT = struct.Struct("<4s2sBx")
_STATE = struct.Struct("<II")
_PROTOCOLS = {"TCP": socket.IPPROTO_TCP, "UDP": socket.IPPROTO_UDP}


@dataclass(frozen=True)
class HostDesired:
    ingress_enforced: bool = False
    egress_enforced: bool = False
    entries: tuple[tuple[int, PolicyEntry], ...] = ()
    """(peer node id or 0, entry)"""
    peers: dict[str, tuple[int, int]] = field(default_factory=dict)
    """node address -> (identity: remote-node or host, node id)"""
    exempt: tuple[tuple[str, int, str], ...] = ()
    """(IPv4, port, "TCP"|"UDP") always allowed both ways: the control plane's addresses"""


class HostFirewall:
    """The host maps of one loaded program set; every method blocks (run on the worker)."""

    def __init__(self, loaded: Any) -> None:
        self.loaded = loaded
        bpf = loaded.bpf
        self.policy = self._raw(bpf, "host_policy", POLICY_KEY_SIZE, POLICY_VAL.size)
        self.peers = self._raw(bpf, "host_peers", 4, _PEER.size)
        self.exempt = self._raw(bpf, "host_exempt", _EXEMPT.size, 4)
        self.state = self._raw(bpf, "host_state", 4, _STATE.size)
        self.ifindex: int | None = None

    @staticmethod
    def _raw(bpf: Any, name: str, ksize: int, vsize: int) -> RawMap:
        table = bpf[name.encode()]
        return RawMap(name, table.map_fd, ksize, vsize, table.max_entries)

    def attach(self, ipr: Any, underlay_ip: str) -> int:
        """Attach host_in/host_out to the interface holding `underlay_ip`; its ifindex."""
        found = ipr.get_addr(address=underlay_ip)
        if not found:
            raise RuntimeError(f"no interface has the underlay address {underlay_ip}")
        index = int(found[0]["index"])
        for hook, prog in PROGRAMS:
            fd, name = self.loaded.prog(prog)
            netlink.attach(ipr, index, hook, fd, name)
        self.ifindex = index
        return index

    def sync(self, desired: HostDesired) -> int:
        """Makes the maps exactly `desired`: entries, peers and exemptions before the
        enforcement flags go on, stale entries after they go off. Returns the writes."""
        policy: dict[bytes, bytes] = {}
        for node_id, entry in desired.entries:
            policy.update(entry_keys(node_id, entry))
        peers = {socket.inet_aton(ip): _PEER.pack(identity, node_id)
                 for ip, (identity, node_id) in desired.peers.items()}
        exempt = {_EXEMPT.pack(socket.inet_aton(ip), struct.pack(">H", port),
                               _PROTOCOLS[proto]): _U32.pack(1)
                  for ip, port, proto in desired.exempt
                  if ipaddress.ip_address(ip).version == 4}
        flags = ((HOST_F_INGRESS if desired.ingress_enforced else 0)
                 | (HOST_F_EGRESS if desired.egress_enforced else 0))
        writes = self.exempt.sync(exempt) + self.peers.sync(peers)
        writes += _grow(self.policy, policy)
        writes += self.state.sync({_U32.pack(0): _STATE.pack(flags, 0)})
        writes += self.policy.sync(policy)
        return writes

    def flags(self) -> tuple[bool, bool]:
        raw = self.state.get(_U32.pack(0))
        flags = _STATE.unpack(raw)[0] if raw else 0
        return bool(flags & HOST_F_INGRESS), bool(flags & HOST_F_EGRESS)

    def entry_count(self) -> int:
        return len(self.policy.entries())

    def exempt_addresses(self) -> list[tuple[str, int, int]]:
        out = []
        for key in self.exempt.entries():
            ip, port, proto = _EXEMPT.unpack(key)
            out.append((socket.inet_ntoa(ip), struct.unpack(">H", port)[0], proto))
        return sorted(out)


def _grow(raw: RawMap, desired: dict[bytes, bytes]) -> int:
    """Writes the new and changed entries only (nothing removed yet)."""
    current = raw.entries()
    changed = [(k, v) for k, v in desired.items() if current.get(k) != v]
    if changed:
        raw.update(changed)
    return len(changed)


def desired_of(entries: Iterable[tuple[Direction, int, str, int, int, int, bool]],
               ingress: bool, egress: bool, nodes: Iterable[tuple[str, str, int]],
               own_node: str, exempt: Iterable[tuple[str, int, str]],
               remote_node: int = 6, host: int = 1) -> HostDesired:
    """The maps' content from a resolved host policy: `entries` are (direction, peer,
    peer_node, protocol, port_lo, port_hi, deny); `nodes` (name, underlay IP, node id)."""
    ids = {name: node_id for name, _ip, node_id in nodes}
    flat: list[tuple[int, PolicyEntry]] = []
    for direction, peer, peer_node, protocol, lo, hi, deny in entries:
        node_id = ids.get(peer_node, 0) if peer_node else 0
        if peer_node and not node_id:
            continue   # a node this agent has not heard of yet: nothing to match
        flat.append((node_id, PolicyEntry(direction, peer, protocol, lo, hi, deny)))
    peers = {ip: (host if name == own_node else remote_node, node_id)
             for name, ip, node_id in nodes}
    return HostDesired(ingress, egress, tuple(flat), peers, tuple(exempt))
