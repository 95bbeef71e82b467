"""The engine's vocabulary: identities, validated policies and their rules, resolved entries.

Policies arrive as YAML (`parse.py`) and are reduced to `Rule`s: one subject selector, one
direction, one verdict, peers and port ranges. Everything downstream (resolution, trace) only
sees rules, so the YAML surface and the semantics stay separate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from bulkhead.httprules import HttpRule
from bulkhead.reserved import RESERVED_BY_ID
from controlplane.policy.labels import ParsedLabels
from controlplane.policy.selector import LabelSelector, Selector

ANY_PEER = 0
"""Peer identity 0 in an entry: any peer."""

RESERVED_IDENTITIES: Mapping[int, str] = RESERVED_BY_ID
"""id -> name of the reserved identities (the table is bulkhead.reserved)."""


@dataclass(frozen=True)
class Identity:
    """A security identity; `labels` are `source:key=value` strings."""

    id: int
    labels: frozenset[str]

    @classmethod
    def of(cls, id: int, labels: Iterable[str]) -> Identity:
        return cls(id, frozenset(labels))


def reserved_identities() -> list[Identity]:
    return [Identity(i, frozenset({f"reserved:{name}"})) for i, name in RESERVED_IDENTITIES.items()]


class Direction(StrEnum):
    INGRESS = "ingress"
    EGRESS = "egress"


class Verdict(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class Protocol(IntEnum):
    ANY = 0
    ICMP = 1
    TCP = 6
    UDP = 17
    ICMPV6 = 58
    SCTP = 132


ICMP_PROTOCOLS = frozenset({Protocol.ICMP, Protocol.ICMPV6})
"""Protocols whose "port" is one ICMP type (`icmps`), never a range."""

NamedPorts = Mapping[str, frozenset[tuple[int, int]]]
"""port name -> the (protocol, number) pairs endpoints serve under it."""
NO_NAMED_PORTS: NamedPorts = {}


@dataclass(frozen=True, order=True)
class PortRange:
    """`protocol` 0 = any; (0, 0) = all ports. ICMP (from `icmps`) carries one ICMP type in
    both port fields, as Cilium keys it where the port would be: (0, 0) is then type 0
    (EchoReply), never "all types" (no rule asks for every ICMP type but protocol any)."""

    protocol: int = 0
    port_lo: int = 0
    port_hi: int = 0
    name: str = ""
    """A named port (`port: http`): the numbers endpoints give that name (`named`), resolved
    as Cilium does: ingress against the selected endpoint's own ports, egress against every
    endpoint's."""

    def covers(self, protocol: int, port: int, named: NamedPorts = NO_NAMED_PORTS) -> bool:
        if self.protocol and self.protocol != protocol:
            return False
        if self.name:
            return (protocol, port) in named.get(self.name, ())
        if self.protocol in ICMP_PROTOCOLS:
            return port == self.port_lo
        return (self.port_lo, self.port_hi) == (0, 0) or self.port_lo <= port <= self.port_hi

    def __str__(self) -> str:
        proto = Protocol(self.protocol).name
        if self.name:
            return f"{self.name}/{proto}"
        if self.protocol in ICMP_PROTOCOLS:
            return f"{self.port_lo}/{proto}"
        if (self.port_lo, self.port_hi) == (0, 0):
            return f"*/{proto}"
        if self.port_lo == self.port_hi:
            return f"{self.port_lo}/{proto}"
        return f"{self.port_lo}-{self.port_hi}/{proto}"


ALL_PORTS = PortRange()


@dataclass(frozen=True, order=True)
class PolicyKey:
    """`namespace` is "" for clusterwide policies."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True, order=True)
class RuleRef:
    """Which policy and which rule in it (`specs[0].ingress[1]`) produced something."""

    policy: PolicyKey
    rule: str

    def __str__(self) -> str:
        return f"{self.policy} {self.rule}"


@dataclass(frozen=True)
class HttpPorts:
    """One `toPorts` item of an allow rule with `rules.http`: its (TCP) ports and its HTTP
    rules, ORed. `path` is the item's place in the rule (`toPorts[0]`), for trace answers."""

    path: str
    ports: tuple[PortRange, ...]
    http: tuple[HttpRule, ...]

    def covers(self, protocol: int, port: int, named: NamedPorts = NO_NAMED_PORTS) -> bool:
        return any(p.covers(protocol, port, named) for p in self.ports)


@dataclass(frozen=True)
class DnsPorts:
    """One `toPorts` item of an egress allow rule with `rules.dns`: its ports (plain L3/L4
    allows to the rule's peers) and the canonical name patterns (bulkhead.fqdnmatch) the
    node's DNS proxy answers for the subject; every other query gets REFUSED."""

    path: str
    ports: tuple[PortRange, ...]
    patterns: tuple[str, ...]


@dataclass(frozen=True)
class ServiceRef:
    """One `toServices` item: `k8sService` (`name`) or `k8sServiceSelector` (`selector` over
    the service's labels). `namespace` "" matches services of every namespace, as Cilium's
    does. `path` is the item's place in the rule (`toServices[0]`)."""

    path: str
    namespace: str = ""
    name: str = ""
    selector: LabelSelector | None = None

    def matches(self, namespace: str, name: str, labels: ParsedLabels) -> bool:
        if self.namespace and self.namespace != namespace:
            return False
        if self.selector is not None:
            return self.selector.matches(labels)
        return self.name == name


@dataclass(frozen=True)
class Rule:
    """One ingress/egress/ingressDeny/egressDeny element, namespace already injected.

    No peers and no ports (`ingress: [{}]`) selects the subject and allows nothing. Ports without
    peers got a wildcard peer at parse time; peers without ports got `ALL_PORTS`. `ports` are
    the plain (L3/L4) ports; `l7` the `toPorts` items whose connections are checked request by
    request (allow rules only). `services` are the rule's `toServices` items: the resolver
    adds a peer per service they select (`controlplane.policy.services`), so `peers` of a
    stored rule are only its own.
    """

    ref: RuleRef
    direction: Direction
    verdict: Verdict
    subject: LabelSelector
    peers: tuple[Selector, ...]
    ports: tuple[PortRange, ...]
    l7: tuple[HttpPorts, ...] = ()
    services: tuple[ServiceRef, ...] = ()
    requires: tuple[LabelSelector, ...] = ()
    """`fromRequires`/`toRequires` (deprecated in Cilium): every one must match every peer
    that an endpoint selector admits, in every rule of this direction and verdict selecting
    the same endpoint (requirements gather per endpoint, across policies)."""
    endpoint_peers: int = 0
    """The first `endpoint_peers` peers came from `fromEndpoints`/`toEndpoints`: the ones
    requirements constrain (entities, CIDRs, services and the wildcard of a ports-only rule
    are not, as in Cilium)."""
    dns: tuple[DnsPorts, ...] = ()
    """`toPorts[].rules.dns` items (egress allow only); their ports are in `ports` too."""
    host: bool = False
    """A host policy's rule (`nodeSelector`): `subject` selects nodes by their labels and the
    rule applies to those nodes' own traffic (`reserved:host`), never to endpoints; resolved
    per node by `controlplane.policy.hosts`, never by the engine."""

    def selects(self, labels: ParsedLabels) -> bool:
        if self.host:
            return "host" in labels.reserved and self.subject.matches(labels)
        return labels.is_endpoint and self.subject.matches(labels)

    def peer_matches(self, labels: ParsedLabels,
                     requires: tuple[LabelSelector, ...] | list[LabelSelector] = ()) -> bool:
        """A peer admits `labels`; an endpoint-selector peer only when `requires` (the
        requirements gathered for the subject) all match too."""
        return any(p.matches(labels) and (i >= self.endpoint_peers
                                          or all(r.matches(labels) for r in requires))
                   for i, p in enumerate(self.peers))

    @property
    def requirement_bucket(self) -> int:
        """Requirements gather per direction and verdict (Cilium keeps allow and deny
        requirements apart): 0 ingress allow, 1 ingress deny, 2 egress allow, 3 egress deny."""
        return ((0 if self.direction is Direction.INGRESS else 2)
                + (0 if self.verdict is Verdict.ALLOW else 1))

    def port_matches(self, protocol: int, port: int,
                     named: NamedPorts = NO_NAMED_PORTS) -> bool:
        """A plain port or an L7 item covers the port (L7 decides per request later)."""
        return (any(p.covers(protocol, port, named) for p in self.ports)
                or any(item.covers(protocol, port, named) for item in self.l7))

    def plain_port_matches(self, protocol: int, port: int,
                           named: NamedPorts = NO_NAMED_PORTS) -> bool:
        return any(p.covers(protocol, port, named) for p in self.ports)

    def l7_items(self, protocol: int, port: int,
                 named: NamedPorts = NO_NAMED_PORTS) -> list[HttpPorts]:
        return [item for item in self.l7 if item.covers(protocol, port, named)]


@dataclass(frozen=True)
class Policy:
    """A validated policy document; `document` is its normalized form (stored, shown by get)."""

    key: PolicyKey
    kind: str
    rules: tuple[Rule, ...]
    document: Mapping[str, Any] = field(compare=False, hash=False)

    @property
    def clusterwide(self) -> bool:
        return not self.key.namespace


@dataclass(frozen=True, order=True)
class Entry:
    """One policy-map entry of an identity; `peer` 0 = any peer.

    `http` non-empty = an L7 entry: an allow whose connections the node's proxy checks request
    by request against these rules (ORed, sorted, unique; `HttpRule()` passes every request).
    """

    direction: Direction
    peer: int
    protocol: int
    port_lo: int
    port_hi: int
    verdict: Verdict
    http: tuple[HttpRule, ...] = ()

    @property
    def ports(self) -> PortRange:
        return PortRange(self.protocol, self.port_lo, self.port_hi)

    @property
    def l7(self) -> bool:
        return bool(self.http)

    def __str__(self) -> str:
        l7 = f" http=[{'; '.join(str(r) for r in self.http)}]" if self.http else ""
        return f"{self.direction} {self.verdict} peer={self.peer} {self.ports}{l7}"


@dataclass(frozen=True)
class ResolvedPolicy:
    """What the datapath of one identity needs: enforcement per direction and its entries
    (sorted, unique). `origins` says which rules produced each entry (debugging only)."""

    identity: int
    ingress_enforced: bool = False
    egress_enforced: bool = False
    entries: tuple[Entry, ...] = ()
    origins: Mapping[Entry, tuple[RuleRef, ...]] = field(default_factory=dict, compare=False)
    dns: tuple[str, ...] = ()
    """The DNS name patterns (`rules.dns`) of every rule selecting the identity, sorted: the
    node's DNS proxy answers only matching queries of its endpoints (none: no DNS rule, every
    query is answered)."""

    def enforced(self, direction: Direction) -> bool:
        return self.ingress_enforced if direction is Direction.INGRESS else self.egress_enforced
