"""Label sets parsed once, so selectors match by dictionary look-ups instead of string splitting.

A label is `source:key=value` (`k8s:org=empire`), `source:key` (`reserved:host`, value "") or,
for CIDR identities, `cidr:<prefix>`. Identities carry canonical label sets; trace takes label
sets that need not belong to any identity, so both go through `ParsedLabels`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# An index key names something an identity "has", so selectors can be found from identities:
# ("L", source, key, value): a label (source "" = any source); ("K", source, key): a key;
# ("C",): at least one cidr: label.
IndexKey = tuple[str, ...]
HAS_CIDR: IndexKey = ("C",)
FQDN_SOURCE = "fqdn"
"""`fqdn:<pattern>`: the identity standing for a `toFQDNs` selector (bulkhead.fqdnmatch)."""


def split_label(label: str) -> tuple[str, str, str]:
    """`source:key=value` -> (source, key, value); a label without source gets source "unspec"."""
    source, sep, rest = label.partition(":")
    if not sep:
        source, rest = "unspec", label
    if source in ("cidr", FQDN_SOURCE):
        return source, rest, ""
    key, _, value = rest.partition("=")
    return source, key, value


@dataclass(frozen=True, eq=False)
class ParsedLabels:
    """A parsed, immutable label set; equality and hashing follow the label strings. (The
    allocator's validated, canonical label set is `controlplane.identity.labels.LabelSet`.)"""

    labels: frozenset[str]
    by_key: dict[str, tuple[tuple[str, str], ...]] = field(repr=False)
    """key -> ((source, value), ...)"""
    reserved: frozenset[str] = field(repr=False)
    """names of `reserved:` labels (`host`, `world`, ...)"""
    cidrs: tuple[IPNetwork, ...] = field(repr=False)
    fqdns: frozenset[str] = field(default=frozenset(), repr=False)
    """patterns of `fqdn:` labels (FQDN selector identities: never endpoints, never world)"""

    @classmethod
    def of(cls, labels: Iterable[str]) -> ParsedLabels:
        canonical = frozenset(labels)
        by_key: dict[str, list[tuple[str, str]]] = {}
        reserved: set[str] = set()
        cidrs: list[IPNetwork] = []
        fqdns: set[str] = set()
        for label in canonical:
            source, key, value = split_label(label)
            if source == FQDN_SOURCE:
                fqdns.add(key)
                continue
            if source == "cidr":
                try:
                    cidrs.append(ipaddress.ip_network(key, strict=False))
                except ValueError:
                    pass
                continue
            if source == "reserved":
                reserved.add(key)
            by_key.setdefault(key, []).append((source, value))
        return cls(
            canonical,
            {k: tuple(sorted(v)) for k, v in by_key.items()},
            frozenset(reserved),
            tuple(sorted(cidrs, key=lambda n: (n.version, n.network_address, n.prefixlen))),
            frozenset(fqdns),
        )

    @property
    def is_endpoint(self) -> bool:
        """True for workload identities: the only ones policies select as subjects."""
        return not self.reserved and not self.cidrs and not self.fqdns

    def index_keys(self) -> list[IndexKey]:
        keys: list[IndexKey] = []
        for key, pairs in self.by_key.items():
            keys.append(("K", "", key))
            for source, value in pairs:
                keys.append(("K", source, key))
                keys.append(("L", source, key, value))
                keys.append(("L", "", key, value))
        if self.cidrs:
            keys.append(HAS_CIDR)
        keys.extend(("F", pattern) for pattern in self.fqdns)
        return keys

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParsedLabels) and other.labels == self.labels

    def __hash__(self) -> int:
        return hash(self.labels)

    def __str__(self) -> str:
        return ",".join(sorted(self.labels))
