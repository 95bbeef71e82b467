"""Host policies for the API: one node's resolved host policy and traces where a side is a
node. Reads the resolver's rules and identities and the node registry's labels; nothing of
its own is kept (host policies are recomputed per question: they and the nodes are few)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bulkhead.errors import FieldViolation, Invalid, NotFound
from controlplane.identity.allocator import IdentityAllocator
from controlplane.identity.labels import parse_labels
from controlplane.nodes.registry import NodeRegistry
from controlplane.policy.hosts import HostPolicy, NodeLabels, node_label_set, resolve_host
from controlplane.policy.labels import ParsedLabels
from controlplane.policy.model import Protocol
from controlplane.policy.trace import Trace, TraceVerdict, trace

from .resolver import PolicyResolver
from .store import _TRACE_PROTOCOLS as TRACE_PROTOCOLS


@dataclass(frozen=True)
class HostResolution:
    policy: HostPolicy
    revision: int


@dataclass(frozen=True)
class HostTrace:
    trace: Trace
    src: tuple[str, ...]
    dst: tuple[str, ...]


class HostPolicies:
    def __init__(self, resolver: PolicyResolver, nodes: NodeRegistry,
                 allocator: IdentityAllocator) -> None:
        self.resolver = resolver
        self.nodes = nodes
        self.allocator = allocator

    def _all_nodes(self) -> list[NodeLabels]:
        return [NodeLabels(n.name, n.labels) for n in self.nodes.nodes()]

    def _node(self, name: str, field_name: str) -> NodeLabels:
        if not name:
            raise Invalid([FieldViolation(field_name, "is required")])
        found = self.nodes.cached(name)
        if found is None:
            raise NotFound(f"node {name!r} is not registered")
        return NodeLabels(found.name, found.labels)

    def resolve(self, node: str) -> HostResolution:
        subject = self._node(node, "node")
        return HostResolution(
            resolve_host(subject, self._all_nodes(), self.resolver.rules(),
                         self.resolver.identity_labels()),
            self.resolver.revision)

    def trace(self, src_node: str, src_labels: Sequence[str], dst_node: str,
              dst_labels: Sequence[str], dport: int, protocol: str) -> HostTrace:
        """A node side is its host: as the subject of its own side (`reserved:host` with its
        labels) and, on the other side, a peer that is the local host when both sides are on
        one node (a node and a label set: the endpoint is taken to run on that node), else a
        remote node."""
        problems: list[FieldViolation] = []
        sides: list[ParsedLabels | NodeLabels | None] = []
        for name, node, labels in (("src", src_node, src_labels), ("dst", dst_node, dst_labels)):
            if bool(node) == bool(labels):
                problems.append(FieldViolation(f"{name}_node",
                                               f"give either {name}_node or {name}_labels"))
                sides.append(None)
            elif labels:
                parsed, more = parse_labels(list(labels), f"{name}_labels",
                                            self.allocator.label_filter)
                problems += more
                sides.append(ParsedLabels.of(parsed.labels))
            else:
                sides.append(None)
        proto = TRACE_PROTOCOLS.get(protocol.upper())
        if proto is None:
            problems.append(FieldViolation("protocol", f"must be TCP, UDP, SCTP or ICMP, not "
                                                       f"{protocol!r}"))
        elif proto is Protocol.ICMP and not 0 <= dport <= 255:
            problems.append(FieldViolation("dport", "must be an ICMP type 0-255 with ICMP"))
        elif proto is not Protocol.ICMP and not 1 <= dport <= 65535:
            problems.append(FieldViolation("dport", "must be 1-65535"))
        if problems or proto is None:
            raise Invalid(problems)
        src = self._node(src_node, "src_node") if src_node else sides[0]
        dst = self._node(dst_node, "dst_node") if dst_node else sides[1]
        assert src is not None and dst is not None
        rules = list(self.resolver.rules())
        src_self, dst_for_src = _views(src, dst)
        dst_self, src_for_dst = _views(dst, src)
        egress = trace(rules, src_self.labels, dst_for_src.labels, dport, proto).egress
        ingress = trace(rules, src_for_dst.labels, dst_self.labels, dport, proto).ingress
        both = (egress.verdict is TraceVerdict.ALLOWED
                and ingress.verdict is TraceVerdict.ALLOWED)
        return HostTrace(Trace(TraceVerdict.ALLOWED if both else TraceVerdict.DENIED,
                               egress, ingress),
                         tuple(sorted(src_self.labels)), tuple(sorted(dst_self.labels)))


def _views(own: ParsedLabels | NodeLabels, other: ParsedLabels | NodeLabels
           ) -> tuple[ParsedLabels, ParsedLabels]:
    """(`own` as the subject of its side, `other` as its peer)."""
    mine = node_label_set(own.labels, local=True) if isinstance(own, NodeLabels) else own
    if isinstance(other, NodeLabels):
        local = not isinstance(own, NodeLabels) or own.name == other.name
        return mine, node_label_set(other.labels, local=local)
    return mine, other
