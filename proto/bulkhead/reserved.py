"""Reserved identities 1-11: fixed numbers, never allocated, never stored.

The one table both sides read: the control plane answers lookups and resolves policy with it,
the agent names peers in flows and map dumps, and the datapath writes the host and remote-node
numbers into the ipcache. nodeagent/datapath/bpf/bulkhead.h repeats those for the C programs
(tests/test_reserved.py checks that the two agree).
"""

from __future__ import annotations

RESERVED: dict[str, int] = {
    "host": 1,
    "world": 2,
    "unmanaged": 3,
    "health": 4,
    "init": 5,
    "remote-node": 6,
    "kube-apiserver": 7,
    "ingress": 8,
    "world-ipv4": 9,
    "world-ipv6": 10,
    "encrypted-overlay": 11,
}
RESERVED_BY_ID: dict[int, str] = {v: k for k, v in RESERVED.items()}

ID_HOST = RESERVED["host"]
ID_WORLD = RESERVED["world"]
ID_REMOTE_NODE = RESERVED["remote-node"]
WORLD_IDENTITIES = frozenset({ID_WORLD, RESERVED["world-ipv4"]})
"""The identities of addresses outside the cluster that IPv4 traffic carries."""


def reserved_labels(ident: int) -> tuple[str, ...]:
    """The labels of reserved identity ``ident`` (KeyError when it is not reserved)."""
    return (f"reserved:{RESERVED_BY_ID[ident]}",)
