"""Property tests: the incremental state always equals a recompute from scratch, equals a naive
reference resolver, reports every identity whose policy changed, and agrees with trace."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.policy import (
    Direction,
    Entry,
    Identity,
    PolicyKey,
    PolicyRepository,
    ResolvedPolicy,
    parse_policies,
    trace,
)
from controlplane.policy.labels import ParsedLabels

from .helpers import lookup

NS = "k8s:io.kubernetes.pod.namespace"

identity_labels = st.one_of(
    st.builds(
        lambda ns, app, tier: frozenset({f"{NS}={ns}", f"k8s:app={app}",
                                         *([f"k8s:tier={tier}"] if tier else [])}),
        st.sampled_from(["default", "prod"]), st.sampled_from(["a", "b", "c"]),
        st.sampled_from([None, "web", "db"])),
    st.sampled_from([frozenset({"cidr:10.1.2.0/24"}), frozenset({"cidr:10.3.0.0/16"}),
                     frozenset({"cidr:192.168.0.1/32"})]),
)

selector = st.one_of(
    st.just({}),
    st.builds(lambda app: {"matchLabels": {"app": app}}, st.sampled_from(["a", "b", "c"])),
    st.builds(lambda ns: {"matchLabels": {"k8s:io.kubernetes.pod.namespace": ns}},
              st.sampled_from(["default", "prod"])),
    st.builds(lambda op, values: {"matchExpressions": [
        {"key": "tier", "operator": op, **({"values": values} if op in ("In", "NotIn") else {})}]},
        st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]),
        st.sampled_from([["web"], ["web", "db"]])),
)
ports = st.lists(st.sampled_from([
    {"port": "80", "protocol": "TCP"}, {"port": 53}, {"port": 8000, "endPort": 8080,
                                                      "protocol": "UDP"}]),
    min_size=1, max_size=2)


@st.composite
def rule(draw: Any, side: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out[f"{side}Endpoints"] = draw(st.lists(selector, min_size=1, max_size=2))
    if draw(st.integers(0, 3)) == 0:
        out[f"{side}Entities"] = draw(st.lists(st.sampled_from(["world", "cluster", "host",
                                                                 "all"]), min_size=1, max_size=2))
    if draw(st.integers(0, 3)) == 0:
        out[f"{side}CIDRSet"] = [draw(st.sampled_from([
            {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}, {"cidr": "10.3.0.0/16"},
            {"cidr": "0.0.0.0/0", "except": ["192.168.0.0/16"]}]))]
    if draw(st.booleans()):
        out["toPorts"] = [{"ports": draw(ports)}]
    return out


@st.composite
def policy_doc(draw: Any, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"endpointSelector": draw(selector)}
    for section, side in (("ingress", "from"), ("egress", "to"), ("ingressDeny", "from"),
                          ("egressDeny", "to")):
        if draw(st.integers(0, 2)) == 0:
            spec[section] = draw(st.lists(rule(side), min_size=1, max_size=2))
    namespace = draw(st.sampled_from([None, "default", "prod"]))
    if namespace is None:
        return {"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy",
                "metadata": {"name": name}, "spec": spec}
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


operation = st.one_of(
    st.tuples(st.just("add"), st.integers(256, 270), identity_labels),
    st.tuples(st.just("remove"), st.integers(256, 270)),
    st.tuples(st.just("upsert"), st.sampled_from(["p0", "p1", "p2", "p3"]).flatmap(policy_doc)),
    st.tuples(st.just("delete"), st.sampled_from(["p0", "p1", "p2", "p3"]),
              st.sampled_from(["", "default", "prod"])),
)


def naive(repo: PolicyRepository) -> dict[int, ResolvedPolicy]:
    """Reference semantics: every rule against every identity, no caches."""
    identities = {i.id: ParsedLabels.of(i.labels) for i in repo.identities()}
    rules = list(repo.rules())
    result = {}
    for subject, labels in identities.items():
        if not labels.is_endpoint:
            continue
        selecting = [r for r in rules if r.selects(labels)]
        entries = set()
        for r in selecting:
            peers = {0} if any(p.is_wildcard for p in r.peers) else set()
            peers |= {i for i, ls in identities.items()
                      if any(not p.is_wildcard and p.matches(ls) for p in r.peers)}
            entries |= {Entry(r.direction, peer, int(p.protocol), p.port_lo, p.port_hi,
                              r.verdict) for peer in peers for p in r.ports}
        result[subject] = ResolvedPolicy(
            subject, any(r.direction is Direction.INGRESS for r in selecting),
            any(r.direction is Direction.EGRESS for r in selecting), tuple(sorted(entries)))
    return result


def run(repo: PolicyRepository, op: tuple[Any, ...]) -> frozenset[int]:
    kind = op[0]
    if kind == "add":
        return repo.add_identity(Identity(op[1], op[2]))
    if kind == "remove":
        return repo.remove_identity(op[1])
    if kind == "upsert":
        return repo.apply(parse_policies(json.dumps(op[1])))
    return repo.delete(PolicyKey(op[2], op[1]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, max_size=25))
def test_incremental_equals_full_recompute(ops: list[tuple[Any, ...]]) -> None:
    repo = PolicyRepository()
    current = repo.resolve_all()
    for op in ops:
        changed = run(repo, op)
        after = repo.resolve_all()
        assert after == repo.full_recompute()
        assert after == naive(repo)
        for identity, resolved in after.items():
            assert repo.enforcement(identity) == (resolved.ingress_enforced,
                                                  resolved.egress_enforced)
        differing = {i for i in current.keys() | after.keys() if current.get(i) != after.get(i)}
        assert differing <= changed, f"{op} changed {differing - changed} without reporting"
        current = after


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, max_size=15),
       st.sampled_from([(80, 6), (53, 17), (8000, 17), (443, 6)]))
def test_trace_agrees_with_resolved_entries(ops: list[tuple[Any, ...]],
                                            packet: tuple[int, int]) -> None:
    repo = PolicyRepository()
    for op in ops:
        run(repo, op)
    port, protocol = packet
    identities = {i.id: i.labels for i in repo.identities()}
    resolved = repo.resolve_all()
    rules = list(repo.rules())
    for src, src_labels in identities.items():
        for dst, dst_labels in identities.items():
            result = trace(rules, src_labels, dst_labels, port, protocol)
            egress = lookup(resolved.get(src, ResolvedPolicy(src)), Direction.EGRESS, dst,
                            protocol, port)
            ingress = lookup(resolved.get(dst, ResolvedPolicy(dst)), Direction.INGRESS, src,
                             protocol, port)
            assert (result.egress.verdict, result.ingress.verdict) == (egress, ingress)
