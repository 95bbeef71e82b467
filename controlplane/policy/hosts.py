"""Host policies (`nodeSelector`) resolved per node: what the host firewall of one node
enforces on its own traffic.

As in Cilium, a node's host is the subject `reserved:host` with the node's labels (here with
source `node`: `node:kubernetes.io/hostname=n1`), and traffic from another node carries the
`remote-node` identity. `fromNodes`/`toNodes` select peer nodes by their labels, which Cilium
does with per-node identities (`--enable-node-selector-labels`); here an entry for a peer node
names the node (`peer_node`) under the remote-node identity, and the datapath tells nodes
apart by their underlay address (each node's address is its node identity). Host rules never
reach the incremental engine: nodes and host policies are few, so a node's host policy is
recomputed from the rules when asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from controlplane.policy.labels import ParsedLabels
from controlplane.policy.model import ANY_PEER, Direction, Rule, RuleRef, Verdict
from controlplane.policy.selector import EntitySelector, NodeSelector

HOST_IDENTITY = 1
REMOTE_NODE_IDENTITY = 6
NODE_LABEL_SOURCE = "node"


def node_label_set(labels: Iterable[str], *, local: bool) -> ParsedLabels:
    """A node's labels (`key=value`) as a label set: the local host's (`reserved:host`, the
    subject of host policies) or a peer node's (`reserved:remote-node`)."""
    reserved = "reserved:host" if local else "reserved:remote-node"
    return ParsedLabels.of([reserved, *(f"{NODE_LABEL_SOURCE}:{label}" for label in labels)])


@dataclass(frozen=True, order=True)
class HostEntry:
    """One entry of a host's policy: `peer` an identity (0 any); `peer_node` names the peer
    node a `fromNodes`/`toNodes` selector matched ("" for every other peer); its `peer` is
    remote-node, or host when the node selects itself."""

    direction: Direction
    peer: int
    peer_node: str
    protocol: int
    port_lo: int
    port_hi: int
    verdict: Verdict

    def __str__(self) -> str:
        peer = f"node:{self.peer_node}" if self.peer_node else str(self.peer)
        ports = "*" if (self.port_lo, self.port_hi) == (0, 0) else (
            str(self.port_lo) if self.port_lo == self.port_hi else
            f"{self.port_lo}-{self.port_hi}")
        return f"{self.direction} {self.verdict} peer={peer} {ports}/{self.protocol}"


@dataclass(frozen=True)
class HostPolicy:
    """A node's resolved host policy. A direction is enforced once some host rule of that
    direction selects the node; then only what its entries allow passes (the control-plane
    connection and the tunnel excepted: `nodeagent` keeps those open)."""

    node: str
    labels: tuple[str, ...]
    ingress_enforced: bool = False
    egress_enforced: bool = False
    entries: tuple[HostEntry, ...] = ()
    origins: Mapping[HostEntry, tuple[RuleRef, ...]] = field(default_factory=dict,
                                                             compare=False)


@dataclass(frozen=True)
class NodeLabels:
    """What resolution needs of a node: its name and `key=value` labels."""

    name: str
    labels: tuple[str, ...]


def resolve_host(node: NodeLabels, nodes: Sequence[NodeLabels], rules: Iterable[Rule],
                 identities: Mapping[int, ParsedLabels]) -> HostPolicy:
    """The host policy of `node`: the host rules selecting it, their peers expanded to
    identities (`identities`: every known identity, reserved ones included) and peer nodes."""
    subject = node_label_set(node.labels, local=True)
    selecting = sorted((r for r in rules if r.host and r.selects(subject)), key=lambda r: r.ref)
    origins: dict[HostEntry, set[RuleRef]] = {}
    for rule in selecting:
        for peer, peer_node in _peers(rule, node, nodes, identities):
            for ports in rule.ports:
                entry = HostEntry(rule.direction, peer, peer_node, ports.protocol,
                                  ports.port_lo, ports.port_hi, rule.verdict)
                origins.setdefault(entry, set()).add(rule.ref)
    return HostPolicy(
        node.name, node.labels,
        any(r.direction is Direction.INGRESS for r in selecting),
        any(r.direction is Direction.EGRESS for r in selecting),
        tuple(sorted(origins)), {e: tuple(sorted(refs)) for e, refs in origins.items()})


def _peers(rule: Rule, node: NodeLabels, nodes: Sequence[NodeLabels],
           identities: Mapping[int, ParsedLabels]) -> list[tuple[int, str]]:
    found: dict[tuple[int, str], None] = {}
    for selector in rule.peers:
        if isinstance(selector, EntitySelector) and selector.is_wildcard:
            found[(ANY_PEER, "")] = None
        elif isinstance(selector, NodeSelector):
            for other in nodes:
                local = other.name == node.name
                if selector.matches(node_label_set(other.labels, local=local)):
                    found[(HOST_IDENTITY if local else REMOTE_NODE_IDENTITY, other.name)] = None
        else:
            for identity, labels in identities.items():
                if selector.matches(labels):
                    found[(identity, "")] = None
    return sorted(found)
