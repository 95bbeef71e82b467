"""Shared test helpers: label shorthands and the datapath's lookup over resolved entries."""

from __future__ import annotations

import copy

from bulkhead.httprules import HttpPolicy, HttpRequest
from controlplane.policy import (
    Direction,
    Identity,
    PolicyRepository,
    ResolvedPolicy,
    TraceVerdict,
    Verdict,
    parse_policies,
    trace,
)
from controlplane.policy.model import RESERVED_IDENTITIES

NS = "k8s:io.kubernetes.pod.namespace"


def pod(namespace: str = "default", **labels: str) -> frozenset[str]:
    """Labels of a pod: `k8s:` labels plus its namespace label."""
    return frozenset({f"{NS}={namespace}", *(f"k8s:{k}={v}" for k, v in labels.items())})


def reserved(name: str) -> frozenset[str]:
    return frozenset({f"reserved:{name}"})


def cidr(prefix: str) -> frozenset[str]:
    return frozenset({f"cidr:{prefix}"})


def lookup(resolved: ResolvedPolicy, direction: Direction, peer: int, protocol: int,
           port: int) -> TraceVerdict:
    """What the datapath does with resolved entries: deny entries first, then allow entries,
    then default deny — unless the direction is not enforced."""
    if not resolved.enforced(direction):
        return TraceVerdict.ALLOWED
    matching = [e for e in resolved.entries if e.direction is direction
                and e.peer in (0, peer) and e.ports.covers(protocol, port)]
    if any(e.verdict is Verdict.DENY for e in matching):
        return TraceVerdict.DENIED
    if any(e.verdict is Verdict.ALLOW for e in matching):
        return TraceVerdict.ALLOWED
    return TraceVerdict.DENIED


def resolved_verdicts(policy_yaml: str, src: frozenset[str], dst: frozenset[str], port: int,
                      protocol: int) -> tuple[TraceVerdict, TraceVerdict]:
    """(egress of src, ingress of dst) computed from a repository's resolved entries."""
    repo = PolicyRepository()
    ids = {}
    next_id = 1000
    for labels in (src, dst):
        reserved_id = next((i for i, n in RESERVED_IDENTITIES.items()
                            if labels == reserved(n)), None)
        if reserved_id is not None:
            ids[labels] = reserved_id
        elif labels not in ids:
            ids[labels] = next_id
            repo.add_identity(Identity(next_id, labels))
            next_id += 1
    if policy_yaml.strip():
        repo.apply(parse_policies(policy_yaml))
    egress = lookup(repo.resolved(ids[src]), Direction.EGRESS, ids[dst], protocol, port)
    ingress = lookup(repo.resolved(ids[dst]), Direction.INGRESS, ids[src], protocol, port)
    assert repo.resolve_all() == repo.full_recompute()
    return egress, ingress


def traced(policy_yaml: str, src: frozenset[str], dst: frozenset[str], port: int,
           protocol: int) -> tuple[TraceVerdict, TraceVerdict, TraceVerdict]:
    policies = parse_policies(policy_yaml) if policy_yaml.strip() else []
    result = trace((r for p in policies for r in p.rules), src, dst, port, protocol)
    return result.verdict, result.egress.verdict, result.ingress.verdict


def lookup_request(resolved: ResolvedPolicy, direction: Direction, peer: int, protocol: int,
                   port: int, request: HttpRequest) -> TraceVerdict:
    """`lookup` for one HTTP request, as the datapath and the proxy decide it: deny entries
    first; then the peer's own entries before the any-peer ones, the most specific port block
    first (an entry for one port before a range before all ports of a protocol before any
    protocol; on a tie, the L7 entry); an L7 entry's rules decide the request."""
    if not resolved.enforced(direction):
        return TraceVerdict.ALLOWED
    matching = [e for e in resolved.entries if e.direction is direction
                and e.peer in (0, peer) and e.ports.covers(protocol, port)]
    if any(e.verdict is Verdict.DENY for e in matching):
        return TraceVerdict.DENIED
    for wanted in (peer, 0):
        allows = [e for e in matching if e.verdict is Verdict.ALLOW and e.peer == wanted]
        if not allows:
            continue
        best = min(allows, key=lambda e: (
            65536 if (e.port_lo, e.port_hi) == (0, 0) else e.port_hi - e.port_lo,
            e.protocol == 0 and (e.port_lo, e.port_hi) == (0, 0), not e.l7))
        if not best.l7 or HttpPolicy(best.http).check(copy.deepcopy(request)).allowed:
            return TraceVerdict.ALLOWED
        return TraceVerdict.DENIED
    return TraceVerdict.DENIED
