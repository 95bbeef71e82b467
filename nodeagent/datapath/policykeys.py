"""Policy entries -> keys of the policy LPM trie.

Scheme (documented in bpf/bulkhead.h): one LPM trie for all local endpoints,
key = ep_id | peer | pad | direction | kind | protocol | dport, all big-endian.
The first 88 bits are always matched exactly.  A wildcard protocol stops the
prefix there (88), a protocol with all ports stops after the protocol (96),
and a port range is split into the minimal set of aligned power-of-two port
blocks, each a prefix of 96 + k bits (like Cilium's port-prefix keys).  Deny
and allow entries live under different ``kind`` values, so the datapath looks
up deny (peer, then any peer) before allow (peer, then any peer) and the most
specific protocol/port block wins inside each.  An entry with protocol 0 and
ports expands to TCP, UDP and SCTP.  ICMP entries (``icmps`` rules) carry one
ICMP type where the port would be (port_lo == port_hi == type, 0 is EchoReply):
an exact key of 112 bits; the datapath puts the packet's ICMP type in dport
for ICMP packets (the key layout is unchanged).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from nodeagent.datapath.layout import (
    POLICY_FIXED_BITS,
    POLICY_KEY_DATA,
    POLICY_KEY_PREFIXLEN,
    POLICY_PROTO_BITS,
    POLICY_VAL,
    Direction,
    Kind,
)
from nodeagent.datapath.models import PolicyEntry, PolicyKeyInfo

PORT_PROTOCOLS = (6, 17, 132)
ICMP_PROTOCOLS = (1, 58)
"""Protocols whose entries hold one ICMP type in the port fields."""

def port_blocks(lo: int, hi: int) -> list[tuple[int, int]]:
    """Split [lo, hi] into aligned blocks, as (start, prefix bits of 16)."""
    if not 0 <= lo <= hi <= 0xFFFF:
        raise ValueError(f"bad port range {lo}-{hi}")
    blocks: list[tuple[int, int]] = []
    start = lo
    while start <= hi:
        size = start & -start if start else 1 << 16
        while start + size - 1 > hi:
            size >>= 1
        blocks.append((start, 16 - (size.bit_length() - 1)))
        start += size
    return blocks

def pack_key(
    prefixlen: int, ep_id: int, peer: int, direction: int, kind: int, proto: int, port: int
) -> bytes:
    return POLICY_KEY_PREFIXLEN.pack(prefixlen) + POLICY_KEY_DATA.pack(
        ep_id, peer, 0, direction, kind, proto, port
    )

def entry_keys(ep_id: int, entry: PolicyEntry) -> Iterator[tuple[bytes, bytes]]:
    """Trie (key, value) pairs for one policy entry of one endpoint."""
    kind = Kind.DENY if entry.deny else Kind.ALLOW
    if entry.deny and entry.proxy_port:
        raise ValueError("a deny entry cannot redirect to a proxy")
    if not 0 <= entry.proxy_port <= 0xFFFF:
        raise ValueError(f"bad proxy port {entry.proxy_port}")
    value = POLICY_VAL.pack(kind, entry.proxy_port)
    direction = Direction(entry.direction)
    # Bit 24: a node-local identity (nodeagent.fqdn); an L7 redirect to one carries the
    # other 24 bits in its mark, with a mark of its own (MARK_TO_PROXY_EGRESS_LEARNT).
    if not 0 <= entry.peer < 1 << 25:
        raise ValueError(f"identity {entry.peer} does not fit 25 bits")
    lo, hi = entry.port_lo, entry.port_hi
    if entry.protocol in ICMP_PROTOCOLS:
        if not 0 <= lo == hi <= 0xFF:
            raise ValueError(f"bad ICMP type {lo}-{hi}")
        yield pack_key(POLICY_PROTO_BITS + 16, ep_id, entry.peer, direction, kind,
                       entry.protocol, lo), value
        return
    if hi == 0:
        hi = lo
    all_ports = (lo, hi) == (0, 0) or (lo, hi) == (0, 0xFFFF)
    if entry.protocol == 0 and all_ports:
        yield pack_key(POLICY_FIXED_BITS, ep_id, entry.peer, direction, kind, 0, 0), value
        return
    protocols = (entry.protocol,) if entry.protocol else PORT_PROTOCOLS
    for proto in protocols:
        if not 0 < proto < 256:
            raise ValueError(f"bad protocol {proto}")
        if all_ports:
            yield pack_key(POLICY_PROTO_BITS, ep_id, entry.peer, direction, kind, proto, 0), value
            continue
        for start, bits in port_blocks(lo, hi):
            plen = POLICY_PROTO_BITS + bits
            yield pack_key(plen, ep_id, entry.peer, direction, kind, proto, start), value

def endpoint_keys(ep_id: int, entries: Iterable[PolicyEntry]) -> dict[bytes, bytes]:
    """The complete desired key set of one endpoint (duplicates collapse; where an entry with
    a proxy port and one without give the same key, the redirect stays, as in Cilium: the
    proxy then lets every request of that peer through, and shows them)."""
    desired: dict[bytes, bytes] = {}
    for entry in entries:
        for key, value in entry_keys(ep_id, entry):
            if entry.proxy_port or POLICY_VAL.unpack(desired.get(key, value))[1] == 0:
                desired[key] = value
    return desired

def key_ep_id(key: bytes) -> int:
    return int.from_bytes(key[4:8], "big")

def decode_key(key: bytes, value: bytes | None = None) -> PolicyKeyInfo:
    """One trie key (with its value, for the proxy port) as the entry block it stands for."""
    proxy_port = POLICY_VAL.unpack(value)[1] if value else 0
    (prefixlen,) = POLICY_KEY_PREFIXLEN.unpack_from(key)
    ep_id, peer, _pad, direction, kind, proto, port = POLICY_KEY_DATA.unpack_from(key, 4)
    if prefixlen <= POLICY_FIXED_BITS:
        return PolicyKeyInfo(ep_id, Direction(direction), peer, kind == Kind.DENY, None, 0, 0xFFFF,
                             proxy_port)
    port_bits = max(0, min(16, prefixlen - POLICY_PROTO_BITS))
    span = 1 << (16 - port_bits)
    lo = port & ~(span - 1) & 0xFFFF
    return PolicyKeyInfo(
        ep_id, Direction(direction), peer, kind == Kind.DENY, proto, lo, lo + span - 1, proxy_port
    )
