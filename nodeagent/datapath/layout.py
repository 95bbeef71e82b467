"""Byte layouts of the BPF maps, mirroring bpf/bulkhead.h (package data beside this module).

Values are packed with :mod:`struct` rather than built field by field as ctypes
objects, because diffing and batch-writing 100,000 ipcache entries must take
well under a second.  The loader checks these sizes against the sizes bcc
derived from the C header, so a drift between the two fails loudly at start.
"""

from __future__ import annotations

import enum
import struct

LAYOUT_VERSION = 1
"""Bump together with BH_LAYOUT_VERSION in bpf/bulkhead.h; part of the pin path."""

ID_ANY = 0
"""Policy-key peer 0: any peer (the reserved identities themselves are bulkhead.reserved)."""

EP_F_INGRESS_ENFORCED = 1
EP_F_EGRESS_ENFORCED = 2

CFG_F_FORWARD_UNKNOWN = 1

LB_F_AFFINITY = 1
"""lb_fe_val.flags: the backend follows the client IP (sessionAffinity: ClientIP)."""

CT_NAT_NONE = 0
CT_NAT_SERVICE = 1
CT_NAT_REVERSE = 2
CT_NAT_TO_PROXY = 3
"""A connection redirected to the L7 proxy (nat_ip = its mark, nat_port = the proxy port)."""
CT_NAT_PROXY_UPSTREAM = 4
"""The proxy's own connection to the original destination: replies go to the proxy."""

MARK_PROXY_MASK = 0xFF
MARK_TO_PROXY_INGRESS = 0xB2
"""| peer identity << 8 (bulkhead.h): a redirected connection, the peer is its source."""
MARK_TO_PROXY_EGRESS = 0xB3
MARK_TO_PROXY_SELECT = 0xFE
"""fwmark mask that matches both to-proxy marks."""
MARK_PROXY_OUT = 0xB4
"""Set (SO_MARK) by the proxy on every socket it sends from."""
MARK_TO_PROXY_EGRESS_LEARNT = 0xB6
"""| (peer identity & 0xFFFFFF) << 8: an egress redirect whose peer is an address the DNS
proxy learnt (its node-local identity has bit 24 set, which the mark cannot hold)."""
LOCAL_IDENTITY_BIT = 1 << 24
"""Bit 24 of an identity: node-local (nodeagent.fqdn), never in a VNI."""
CT_NAT_HAIRPIN = 5

POLICY_FIXED_BITS = 88
"""Policy key bits always inside the prefix: ep_id, peer, pad, dir, kind."""
POLICY_PROTO_BITS = POLICY_FIXED_BITS + 8


class Direction(enum.IntEnum):
    INGRESS = 0
    EGRESS = 1


class Kind(enum.IntEnum):
    DENY = 0
    ALLOW = 1


class Verdict(enum.IntEnum):
    FORWARDED = 0
    DROPPED = 1


class Reason(enum.IntEnum):
    NONE = 0
    POLICY_DENIED = 1
    POLICY_DEFAULT_DENY = 2
    UNKNOWN_DESTINATION = 3
    UNKNOWN_SOURCE = 4
    TUNNEL_ERROR = 5
    CT_FULL = 6
    NO_SERVICE_BACKEND = 7
    PROXY_UNAVAILABLE = 16


class ObsPoint(enum.IntEnum):
    FROM_POD = 0
    FROM_OVERLAY = 1
    TO_POD = 2
    HOST_FIREWALL = 3
    """host_in/host_out: a verdict of the host firewall on the node's own traffic."""


# struct ep_key / ep_info
EP_KEY = struct.Struct("<4s")
EP_VAL = struct.Struct("<IIII6s6s")
# struct ipcache_key / ipcache_val
IPCACHE_KEY = struct.Struct("<I4s")
IPCACHE_VAL = struct.Struct("<II")
# struct policy_key (prefixlen little-endian, the rest big-endian) / policy_val
POLICY_KEY_PREFIXLEN = struct.Struct("<I")
POLICY_KEY_DATA = struct.Struct(">IIBBBBH2x")
POLICY_KEY_SIZE = POLICY_KEY_PREFIXLEN.size + POLICY_KEY_DATA.size
POLICY_VAL = struct.Struct("<II")
# struct ct_key / ct_val (ports kept as raw network-order bytes)
CT_KEY = struct.Struct("<4s4s2s2sB3x")
CT_VAL = struct.Struct("<QQIIBB2s4s")
# struct lb_fe_key / lb_fe_val / lb_be_key / lb_be_val (ports raw network-order bytes)
LB_FE_KEY = struct.Struct("<4s2sBx")
LB_FE_VAL = struct.Struct("<IHBx")
LB_BE_KEY = struct.Struct("<4s2sBxI")
LB_BE_VAL = struct.Struct("<4s2s2x")
# struct proxy_vip
PROXY_VIP = struct.Struct("<4s2s2x")
# struct counter_key / counter_val
COUNTER_KEY = struct.Struct("<IBBH")
COUNTER_VAL = struct.Struct("<QQ")
# struct node_config
CONFIG_VAL = struct.Struct("<II")
# struct flow_event
FLOW_EVENT = struct.Struct("<Q4s4sIIIHHBBBBBBHI4x")

# mesh_grace: cluster id -> monotonic ns the cluster's sync grace lasts until
MESH_GRACE_KEY = struct.Struct("<I")
MESH_GRACE_VAL = struct.Struct("<Q")

SIZES: dict[str, tuple[int, int]] = {
    "endpoints": (EP_KEY.size, EP_VAL.size),
    "ipcache": (IPCACHE_KEY.size, IPCACHE_VAL.size),
    "policy": (POLICY_KEY_SIZE, POLICY_VAL.size),
    "ct": (CT_KEY.size, CT_VAL.size),
    "counters": (COUNTER_KEY.size, COUNTER_VAL.size),
    "config": (4, CONFIG_VAL.size),
    "lb_frontends": (LB_FE_KEY.size, LB_FE_VAL.size),
    "lb_backends": (LB_BE_KEY.size, LB_BE_VAL.size),
    "proxy_vips": (CT_KEY.size, PROXY_VIP.size),
    "mesh_grace": (MESH_GRACE_KEY.size, MESH_GRACE_VAL.size),
}
"""Expected (key, value) sizes per map, checked against bcc's types at load."""
