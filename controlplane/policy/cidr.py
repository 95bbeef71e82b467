"""CIDR identities: a policy's CIDR peers become identities with a `cidr:<prefix>` label.

The engine does not number prefixes itself; it asks the `CidrIdentities` it was given. In the
control plane that is the resolver's lookup-only `IndexCidrIdentities` (controlplane/policystore):
the policy store allocates a prefix's identity in etcd before it stores the policy,
so CIDR identities are cluster-wide like any other and resolution only looks them up.
`InMemoryCidrIdentities`, which does number them, serves tests and benchmarks.
"""

from __future__ import annotations

from typing import Protocol

CIDR_SOURCE = "cidr"


def cidr_label(prefix: str) -> str:
    """The label of a policy-made identity: `cidr:<prefix>`; a key that already is an
    `fqdn:<pattern>` label (a `toFQDNs` selector, made and held the same way) is its own."""
    return prefix if prefix.startswith("fqdn:") else f"{CIDR_SOURCE}:{prefix}"


class CidrIdentities(Protocol):
    """The identity of a prefix. The repository calls `ensure` when the first policy names a
    prefix and `release` when the last one stops naming it (an implementation may allocate
    and free there, or only look up)."""

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
