"""Selectors: which label sets a policy's subject or peer names.

Three kinds, all matched against a `ParsedLabels`, so resolution (identities) and trace (free label
sets) agree by construction: `LabelSelector` (matchLabels/matchExpressions), `EntitySelector`
(fromEntities) and `CidrSelector` (fromCIDR/fromCIDRSet). Each names anchor options: sets
of index keys, one of which every matching label set has, so a new identity is only tested
against selectors that could match it (Cilium's SelectorCache tests every selector; Python
cannot afford that).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from controlplane.identity.labels import NAMESPACE_LABEL
from controlplane.policy.labels import HAS_CIDR, IndexKey, IPNetwork, ParsedLabels


class Operator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True, order=True)
class Requirement:
    """One condition on a label key; `source` "" means any source."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()
    source: str = ""

    def _present(self, labels: ParsedLabels) -> list[str]:
        pairs = labels.by_key.get(self.key, ())
        return [v for s, v in pairs if not self.source or s == self.source]

    def matches(self, labels: ParsedLabels) -> bool:
        present = self._present(labels)
        if self.operator is Operator.EXISTS:
            return bool(present)
        if self.operator is Operator.DOES_NOT_EXIST:
            return not present
        found = any(v in self.values for v in present)
        return found if self.operator is Operator.IN else not found

    def __str__(self) -> str:
        key = f"{self.source}:{self.key}" if self.source else self.key
        if self.operator is Operator.IN and len(self.values) == 1:
            return f"{key}={self.values[0]}"
        if self.operator in (Operator.IN, Operator.NOT_IN):
            return f"{key} {self.operator.value} ({','.join(self.values)})"
        return f"{key} {self.operator.value}"


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements; no requirements selects everything."""

    requirements: tuple[Requirement, ...] = ()

    @property
    def is_wildcard(self) -> bool:
        return not self.requirements

    def names_namespace(self) -> bool:
        return any(r.key == NAMESPACE_LABEL for r in self.requirements)

    def names_reserved(self) -> bool:
        return any(r.source == "reserved" for r in self.requirements)

    def with_requirement(self, extra: Requirement) -> LabelSelector:
        return LabelSelector(tuple(sorted({*self.requirements, extra})))

    def matches(self, labels: ParsedLabels) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def anchor_options(self) -> list[tuple[IndexKey, ...]]:
        """Each In/Exists requirement is a possible anchor (an empty list: none)."""
        options: list[tuple[IndexKey, ...]] = []
        for r in self.requirements:
            if r.operator is Operator.IN:
                options.append(tuple(("L", r.source, r.key, v) for v in r.values))
            elif r.operator is Operator.EXISTS:
                options.append((("K", r.source, r.key),))
        return options

    def __str__(self) -> str:
        return "{" + ", ".join(str(r) for r in self.requirements) + "}"


ENTITIES: dict[str, frozenset[str]] = {
    # entity -> reserved label names it covers (plus the rules in EntitySelector.matches)
    "host": frozenset({"host"}),
    "remote-node": frozenset({"remote-node"}),
    "unmanaged": frozenset({"unmanaged"}),
    "health": frozenset({"health"}),
    "init": frozenset({"init"}),
    "kube-apiserver": frozenset({"kube-apiserver"}),
    "ingress": frozenset({"ingress"}),
    "world": frozenset({"world", "world-ipv4", "world-ipv6"}),
    "world-ipv4": frozenset({"world-ipv4"}),
    "world-ipv6": frozenset({"world-ipv6"}),
    "cluster": frozenset({"host", "health", "init", "remote-node"}),
    "all": frozenset(),
}
"""The supported entities (Cilium's names)."""


@dataclass(frozen=True)
class EntitySelector:
    """An entity. `world*` also covers CIDR identities: addresses outside the cluster that got
    their own identity must stay reachable when some other policy named their prefix."""

    entity: str

    @property
    def is_wildcard(self) -> bool:
        return self.entity == "all"

    def matches(self, labels: ParsedLabels) -> bool:
        if self.entity == "all":
            return True
        if labels.reserved & ENTITIES[self.entity]:
            return True
        if self.entity == "cluster":
            return labels.is_endpoint
        if self.entity == "world":
            return bool(labels.cidrs)
        if self.entity == "world-ipv4":
            return any(c.version == 4 for c in labels.cidrs)
        if self.entity == "world-ipv6":
            return any(c.version == 6 for c in labels.cidrs)
        return False

    def anchor_options(self) -> list[tuple[IndexKey, ...]]:
        if self.entity in ("cluster", "all"):
            return []
        names = sorted(ENTITIES[self.entity])
        keys: list[IndexKey] = [("L", "reserved", name, "") for name in names]
        if self.entity.startswith("world"):
            keys.append(HAS_CIDR)
        return [tuple(keys)]

    def __str__(self) -> str:
        return f"entity:{self.entity}"


_WORLD_LABEL = {4: "world-ipv4", 6: "world-ipv6"}


@dataclass(frozen=True)
class CidrSelector:
    """Every CIDR identity inside `prefix` and outside every `excepts` prefix. A /0 prefix also
    covers the world identities (addresses no CIDR identity covers map to world)."""

    prefix: IPNetwork
    excepts: tuple[IPNetwork, ...] = ()

    @property
    def is_wildcard(self) -> bool:
        return False

    def _covers(self, net: IPNetwork) -> bool:
        if net.version != self.prefix.version or not net.subnet_of(self.prefix):  # type: ignore[arg-type]
            return False
        return not any(net.version == e.version and net.subnet_of(e) for e in self.excepts)  # type: ignore[arg-type]

    def matches(self, labels: ParsedLabels) -> bool:
        if any(self._covers(c) for c in labels.cidrs):
            return True
        if self.prefix.prefixlen == 0 and not any(
            isinstance(e, type(self.prefix)) and e.prefixlen == 0 for e in self.excepts
        ):
            return bool(labels.reserved & {"world", _WORLD_LABEL[self.prefix.version]})
        return False

    def anchor_options(self) -> list[tuple[IndexKey, ...]]:
        if self.prefix.prefixlen == 0:
            return [(HAS_CIDR, ("L", "reserved", "world", ""),
                     ("L", "reserved", _WORLD_LABEL[self.prefix.version], ""))]
        return [(HAS_CIDR,)]

    def prefixes(self) -> tuple[IPNetwork, ...]:
        """Prefixes that need a CIDR identity (the datapath's longest-prefix match needs the
        excepted ones too, so they resolve to an identity that is not allowed)."""
        own = () if self.prefix.prefixlen == 0 else (self.prefix,)
        return own + self.excepts

    def __str__(self) -> str:
        if not self.excepts:
            return f"cidr:{self.prefix}"
        return f"cidr:{self.prefix} except {','.join(map(str, self.excepts))}"


@dataclass(frozen=True)
class NodeSelector:
    """`fromNodes`/`toNodes`: nodes whose labels match (`selector` over the node's labels, which
    node label sets carry with source `node`). A node label set is a host's (`reserved:host`,
    the local node) or a peer node's (`reserved:remote-node`): see `controlplane.policy.hosts`.
    Only host policies resolve it (`Rule.host`); the engine never sees one."""

    selector: LabelSelector

    @property
    def is_wildcard(self) -> bool:
        return False

    def matches(self, labels: ParsedLabels) -> bool:
        return bool(labels.reserved & {"host", "remote-node"}) and self.selector.matches(labels)

    def anchor_options(self) -> list[tuple[IndexKey, ...]]:
        return [(("L", "reserved", "host", ""), ("L", "reserved", "remote-node", ""))]

    def __str__(self) -> str:
        return f"nodes:{self.selector}"


@dataclass(frozen=True)
class FqdnSelector:
    """A `toFQDNs` item (matchName or matchPattern, canonical: bulkhead.fqdnmatch). It selects
    the one identity labelled `fqdn:<pattern>`, which the policy store allocates like a CIDR
    identity; each agent turns that identity's entries into entries for the addresses its DNS
    proxy learnt for matching names (nodeagent/fqdn), so the control plane never sees them."""

    pattern: str

    @property
    def is_wildcard(self) -> bool:
        return False

    def matches(self, labels: ParsedLabels) -> bool:
        return self.pattern in labels.fqdns

    def anchor_options(self) -> list[tuple[IndexKey, ...]]:
        return [(("F", self.pattern),)]

    def __str__(self) -> str:
        return f"fqdn:{self.pattern}"


Selector = LabelSelector | EntitySelector | CidrSelector | NodeSelector | FqdnSelector


def parse_network(text: str) -> IPNetwork:
    """An IP or prefix, host bits masked as Cilium does (`10.1.1.1` -> `10.1.1.1/32`)."""
    return ipaddress.ip_network(text, strict=False)
