"""Reserved identities 1-11: fixed numbers, never allocated, never stored."""

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
UNKNOWN = 0


def reserved_labels(ident: int) -> tuple[str, ...]:
    return (f"reserved:{RESERVED_BY_ID[ident]}",)
