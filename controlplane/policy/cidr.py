"""CIDR identities: a policy's CIDR peers become identities with a `cidr:<prefix>` label.

The engine does not allocate numbers itself: the control plane injects its identity allocator,
so CIDR identities are cluster-wide like any other. `InMemoryCidrIdentities` serves tests and
benchmarks.
"""

from __future__ import annotations

from typing import Protocol

CIDR_SOURCE = "cidr"


def cidr_label(prefix: str) -> str:
    return f"{CIDR_SOURCE}:{prefix}"


class CidrIdentities(Protocol):
    """Allocates the identity of a prefix. The repository calls `ensure` when the first policy
    names a prefix and `release` when the last one stops naming it."""

    def ensure(self, prefix: str) -> int: ...

    def release(self, prefix: str) -> None: ...


class InMemoryCidrIdentities:
    """Numbers from `first` upwards; a released prefix's number is not reused."""

    def __init__(self, first: int = 0xF00000) -> None:
        self._next = first
        self.ids: dict[str, int] = {}

    def ensure(self, prefix: str) -> int:
        if prefix not in self.ids:
            self.ids[prefix] = self._next
            self._next += 1
        return self.ids[prefix]

    def release(self, prefix: str) -> None:
        self.ids.pop(prefix, None)
