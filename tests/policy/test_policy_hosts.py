"""Host policies (`nodeSelector`, `fromNodes`/`toNodes`, the host and remote-node entities):
parse errors with their paths, and resolution per node as Cilium defines it."""

from __future__ import annotations

import pytest

from controlplane.policy import Direction, TraceVerdict, Verdict, parse_policies, trace
from controlplane.policy.hosts import (
    HOST_IDENTITY,
    REMOTE_NODE_IDENTITY,
    HostEntry,
    NodeLabels,
    node_label_set,
    resolve_host,
)
from controlplane.policy.labels import ParsedLabels
from controlplane.policy.model import RESERVED_IDENTITIES
from controlplane.policy.parse import PolicyValidationError
from tests.policy.helpers import pod

CCNP = "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata: {name: h}\n"
CNP = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\n"

N1 = NodeLabels("n1", ("kubernetes.io/hostname=n1", "role=worker"))
N2 = NodeLabels("n2", ("kubernetes.io/hostname=n2", "ssh=allowed"))
N3 = NodeLabels("n3", ("kubernetes.io/hostname=n3",))
NODES = (N1, N2, N3)
WEB = 1000
IDENTITIES = {**{i: ParsedLabels.of([f"reserved:{n}"]) for i, n in RESERVED_IDENTITIES.items()},
              WEB: ParsedLabels.of(pod(app="web"))}

SSH_FROM_N2 = CCNP + """spec:
  nodeSelector: {matchLabels: {role: worker}}
  ingress:
  - fromNodes: [{matchLabels: {ssh: allowed}}]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
"""


def problems(text: str) -> dict[str, str]:
    with pytest.raises(PolicyValidationError) as caught:
        parse_policies(text)
    return {v.field: v.description for v in caught.value.violations}


@pytest.mark.parametrize(("text", "field", "words"), [
    (CNP + "spec:\n  nodeSelector: {}\n  ingress: [{}]", "spec.nodeSelector",
     "must be a CiliumClusterwideNetworkPolicy"),
    (CCNP + "spec:\n  nodeSelector: {}\n  endpointSelector: {}\n  ingress: [{}]",
     "spec.endpointSelector", "cannot be used together with nodeSelector"),
    (CCNP + "spec:\n  nodeSelector: {matchLabels: {'a b': c}}", "spec.nodeSelector.matchLabels.a b",
     "not a valid label key"),
    (CCNP + "spec:\n  nodeSelector: []", "spec.nodeSelector", "must be a mapping"),
    (CCNP + "spec:\n  nodeSelector: {}\n  ingress:\n  - fromNodes: {}",
     "spec.ingress[0].fromNodes", "must be a list"),
    (CCNP + "spec:\n  nodeSelector: {}\n  egress:\n  - toNodes: [{matchLabels: {a: -b}}]",
     "spec.egress[0].toNodes[0].matchLabels.a", "not a valid label value"),
    (CCNP + "spec:\n  nodeSelector: {}\n  ingress:\n  - toNodes: [{}]",
     "spec.ingress[0].toNodes", "unknown field"),
    (CCNP + "spec:\n  nodeSelector: {}\n  ingress:\n  - fromNodes: [{}]\n"
     "    fromEntities: [world]", "spec.ingress[0].fromNodes", "cannot be combined with"),
    (CCNP + "spec:\n  nodeSelector: {}\n  ingress:\n  - toPorts:\n"
     "    - ports: [{port: '80', protocol: TCP}]\n      rules: {http: [{method: GET}]}",
     "spec.ingress[0].toPorts[0].rules", "L7 rules are not supported in host policies"),
    (CCNP + "spec:\n  nodeSelector: {}\n  egress:\n  - toServices: "
     "[{k8sService: {serviceName: a, namespace: b}}]", "spec.egress[0].toServices",
     "not supported in host policies"),
    (CCNP + "spec:\n  nodeSelector: {}\n  ingress:\n  - fromRequires: [{}]",
     "spec.ingress[0].fromRequires", "not supported in host policies"),
    (CCNP + "spec:\n  nodeSelector: {}\n  ingress:\n  - toPorts: [{ports: [{port: ssh}]}]",
     "spec.ingress[0].toPorts", "named ports are not supported in host policies"),
    (CNP + "spec:\n  endpointSelector: {}\n  ingress:\n  - fromNodes: [{}]",
     "spec.ingress[0].fromNodes", "supported only in host policies"),
    (CCNP + "spec:\n  nodeSelector: {}\n  ingress:\n  - fromEntities: [nodes]",
     "spec.ingress[0].fromEntities[0]", "unknown entity 'nodes'"),
])
def test_invalid_host_policies_name_the_field(text: str, field: str, words: str) -> None:
    found = problems(text)
    assert field in found, found
    assert words in found[field], found[field]


def test_host_rules_select_hosts_only() -> None:
    rules = parse_policies(SSH_FROM_N2)[0].rules
    assert all(r.host for r in rules)
    assert rules[0].selects(node_label_set(N1.labels, local=True))
    assert not rules[0].selects(node_label_set(N3.labels, local=True))
    # `nodeSelector: {}` selects every node, never a pod (and no endpoint rule a host).
    everything = parse_policies(CCNP + "spec:\n  nodeSelector: {}\n  ingress: [{}]")[0].rules
    assert not everything[0].selects(ParsedLabels.of(pod(app="web")))
    pods = parse_policies(CCNP + "spec:\n  endpointSelector: {}\n  ingress: [{}]")[0].rules
    assert not pods[0].selects(node_label_set(N1.labels, local=True))


def _verdict(policy_yaml: str, node: NodeLabels, direction: Direction, peer: int,
             peer_node: str, port: int) -> TraceVerdict:
    """The host datapath's lookup over the resolved entries: deny first, then allow, then
    default deny when the direction is enforced."""
    rules = [r for p in parse_policies(policy_yaml) for r in p.rules]
    resolved = resolve_host(node, NODES, rules, IDENTITIES)
    enforced = (resolved.ingress_enforced if direction is Direction.INGRESS
                else resolved.egress_enforced)
    if not enforced:
        return TraceVerdict.ALLOWED
    matching = [e for e in resolved.entries if e.direction is direction
                and e.peer in (0, peer) and e.peer_node in ("", peer_node)
                and ((e.port_lo, e.port_hi) == (0, 0) or e.port_lo <= port <= e.port_hi)]
    if any(e.verdict is Verdict.DENY for e in matching):
        return TraceVerdict.DENIED
    if any(e.verdict is Verdict.ALLOW for e in matching):
        return TraceVerdict.ALLOWED
    return TraceVerdict.DENIED


ALLOWED, DENIED = TraceVerdict.ALLOWED, TraceVerdict.DENIED
RN, HOST = REMOTE_NODE_IDENTITY, HOST_IDENTITY
TO_HOST_FROM_PODS = CCNP + """spec:
  nodeSelector: {}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "9100", protocol: TCP}]}]
"""
REMOTE_NODES_ALL = CCNP + "spec:\n  nodeSelector: {}\n  ingress:\n  - fromEntities: [remote-node]"
DENY_ALL = CCNP + "spec:\n  nodeSelector: {}\n  ingress: [{}]\n  egress: [{}]"
DENY_N3 = CCNP + """spec:
  nodeSelector: {}
  ingressDeny:
  - fromNodes: [{matchLabels: {kubernetes.io/hostname: n3}}]
  ingress:
  - fromEntities: [remote-node]
"""
EGRESS_TO_NODES = CCNP + """spec:
  nodeSelector: {matchLabels: {kubernetes.io/hostname: n2}}
  egress:
  - toNodes: [{matchLabels: {role: worker}}]
    toPorts: [{ports: [{port: "10250", protocol: TCP}]}]
  - toEntities: [host]
"""


@pytest.mark.parametrize(("policy", "node", "direction", "peer", "peer_node", "port",
                          "expected"), [
    # ssh on n1 (role=worker) allowed from n2 (ssh=allowed) only
    (SSH_FROM_N2, N1, Direction.INGRESS, RN, "n2", 22, ALLOWED),
    (SSH_FROM_N2, N1, Direction.INGRESS, RN, "n3", 22, DENIED),
    (SSH_FROM_N2, N1, Direction.INGRESS, RN, "n2", 23, DENIED),
    (SSH_FROM_N2, N1, Direction.INGRESS, WEB, "", 22, DENIED),
    (SSH_FROM_N2, N1, Direction.EGRESS, RN, "n3", 22, ALLOWED),     # egress not enforced
    (SSH_FROM_N2, N3, Direction.INGRESS, RN, "n1", 22, ALLOWED),    # n3 not selected
    # the remote-node entity: every other node, no pod
    (REMOTE_NODES_ALL, N1, Direction.INGRESS, RN, "n3", 443, ALLOWED),
    (REMOTE_NODES_ALL, N1, Direction.INGRESS, WEB, "", 443, DENIED),
    # pods to the host, by endpoint selector
    (TO_HOST_FROM_PODS, N2, Direction.INGRESS, WEB, "", 9100, ALLOWED),
    (TO_HOST_FROM_PODS, N2, Direction.INGRESS, WEB, "", 9101, DENIED),
    (TO_HOST_FROM_PODS, N2, Direction.INGRESS, RN, "n1", 9100, DENIED),
    # deny all (ingress: [{}]) enforces and allows nothing, both ways
    (DENY_ALL, N3, Direction.INGRESS, RN, "n1", 22, DENIED),
    (DENY_ALL, N3, Direction.EGRESS, WEB, "", 80, DENIED),
    # a deny of one node beats the remote-node allow
    (DENY_N3, N1, Direction.INGRESS, RN, "n3", 22, DENIED),
    (DENY_N3, N1, Direction.INGRESS, RN, "n2", 22, ALLOWED),
    # egress of n2's host to worker nodes on 10250 and to its own host
    (EGRESS_TO_NODES, N2, Direction.EGRESS, RN, "n1", 10250, ALLOWED),
    (EGRESS_TO_NODES, N2, Direction.EGRESS, RN, "n3", 10250, DENIED),
    (EGRESS_TO_NODES, N2, Direction.EGRESS, HOST, "", 8080, ALLOWED),
    (EGRESS_TO_NODES, N1, Direction.EGRESS, RN, "n3", 10250, ALLOWED),  # n1 not selected
])
def test_host_resolution_truth_table(policy: str, node: NodeLabels, direction: Direction,
                                     peer: int, peer_node: str, port: int,
                                     expected: TraceVerdict) -> None:
    assert _verdict(policy, node, direction, peer, peer_node, port) is expected


def test_resolved_entries_name_peer_nodes_and_origins() -> None:
    rules = parse_policies(SSH_FROM_N2)[0].rules
    resolved = resolve_host(N1, NODES, rules, IDENTITIES)
    entry = HostEntry(Direction.INGRESS, RN, "n2", 6, 22, 22, Verdict.ALLOW)
    assert resolved.ingress_enforced and not resolved.egress_enforced
    assert resolved.entries == (entry,)
    assert [str(r) for r in resolved.origins[entry]] == ["h spec.ingress[0]"]
    # A node selecting itself by fromNodes gets its own host as the peer.
    self_rules = parse_policies(CCNP + "spec:\n  nodeSelector: {}\n  ingress:\n"
                                "  - fromNodes: [{matchLabels: {role: worker}}]")[0].rules
    assert [(e.peer, e.peer_node) for e in resolve_host(N1, NODES, self_rules,
                                                        IDENTITIES).entries] == [(HOST, "n1")]


def test_endpoint_policies_see_hosts_and_remote_nodes_through_entities() -> None:
    """`policy trace` with node label sets: a pod policy allowing from the host entity admits
    the local host, and a host policy is checked on the host's side."""
    rules = [r for p in parse_policies(TO_HOST_FROM_PODS) for r in p.rules]
    rules += parse_policies(CNP + "spec:\n  endpointSelector: {matchLabels: {app: web}}\n"
                            "  ingress:\n  - fromEntities: [host]\n")[0].rules
    host = node_label_set(N1.labels, local=True)
    remote = node_label_set(N2.labels, local=False)
    web = pod(app="web")
    assert trace(rules, host.labels, web, 80, 6).verdict is ALLOWED
    assert trace(rules, remote.labels, web, 80, 6).verdict is DENIED
    assert trace(rules, web, host.labels, 9100, 6).verdict is ALLOWED
    denied = trace(rules, web, host.labels, 22, 6)
    assert denied.verdict is DENIED and denied.ingress.enforced_by[0].rule == "spec.ingress[0]"
