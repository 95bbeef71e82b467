"""Resolution with L7 rules: entries carry the HTTP rules, combined the way Cilium combines
them (union per peer and port, an L3/L4 allow adds a rule passing every request, any-peer rules
reach a peer's own entry, deny wins), incrementally and deterministically; trace agrees."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkhead.httprules import HttpRequest, HttpRule
from controlplane.policy import (
    Direction,
    Entry,
    Identity,
    PolicyKey,
    PolicyRepository,
    ResolvedPolicy,
    TraceVerdict,
    Verdict,
    parse_policies,
    trace,
)
from controlplane.subscription.content import policy_change
from controlplane.subscription.policy import EnginePolicySource

from .helpers import lookup_request, pod

DEMO = Path(__file__).resolve().parents[2] / "integration" / "lab" / "sw_l3_l4_l7_policy.yaml"
DEATHSTAR, TIEFIGHTER, XWING = 300, 301, 302
LANDING = HttpRule("POST", "/v1/request-landing")
ALLOW_ALL = HttpRule()
IN, ALLOW, TCP = Direction.INGRESS, Verdict.ALLOW, 6


def starwars(*docs: str) -> PolicyRepository:
    repo = PolicyRepository()
    repo.add_identity(Identity(DEATHSTAR, pod(org="empire", **{"class": "deathstar"})))
    repo.add_identity(Identity(TIEFIGHTER, pod(org="empire", **{"class": "tiefighter"})))
    repo.add_identity(Identity(XWING, pod(org="alliance", **{"class": "xwing"})))
    for doc in docs:
        repo.apply(parse_policies(doc))
    return repo


def policy(name: str, ingress: str, kind: str = "ingress") -> str:
    return (f"apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {{name: {name}}}\n"
            f"spec:\n  endpointSelector: {{matchLabels: {{class: deathstar}}}}\n"
            f"  {kind}:\n{ingress}")


def l7(name: str, peer: str | None, http: str, port: str = "80") -> str:
    peers = f"  - fromEndpoints: [{{matchLabels: {{{peer}}}}}]\n    toPorts:\n" if peer else \
        "  - toPorts:\n"
    return policy(name, peers + f"    - ports: [{{port: '{port}', protocol: TCP}}]\n"
                                f"      rules: {{http: {http}}}\n")


def plain(name: str, peer: str | None, port: str | None = "80", kind: str = "ingress") -> str:
    if peer and port is None:
        return policy(name, f"  - fromEndpoints: [{{matchLabels: {{{peer}}}}}]\n", kind)
    head = f"  - fromEndpoints: [{{matchLabels: {{{peer}}}}}]\n    toPorts:\n" if peer else \
        "  - toPorts:\n"
    return policy(name, head + f"    - ports: [{{port: '{port}', protocol: TCP}}]\n", kind)


def ingress(repo: PolicyRepository) -> list[Entry]:
    return [e for e in repo.resolved(DEATHSTAR).entries if e.direction is IN]


def test_the_demo_policy_resolves_to_an_l7_entry_for_the_empire_only() -> None:
    repo = starwars(DEMO.read_text())
    assert ingress(repo) == [
        Entry(IN, DEATHSTAR, TCP, 80, 80, ALLOW, (LANDING,)),   # org=empire selects itself
        Entry(IN, TIEFIGHTER, TCP, 80, 80, ALLOW, (LANDING,))]
    assert repo.resolved(DEATHSTAR).entries[1].l7
    resolved = repo.resolved(DEATHSTAR, origins=True)
    assert [str(r) for r in resolved.origins[resolved.entries[1]]] == [
        "default/rule1 spec.ingress[0]"]


def test_l7_rules_of_several_policies_for_one_peer_and_port_union() -> None:
    repo = starwars(DEMO.read_text(), l7("more", "class: tiefighter",
                                         "[{method: GET, path: '/v1/'}]"))
    (tie,) = [e for e in ingress(repo) if e.peer == TIEFIGHTER]
    assert tie.http == (HttpRule("GET", "/v1/"), LANDING)          # sorted, unique
    repo.delete(PolicyKey("default", "more"))
    (tie,) = [e for e in ingress(repo) if e.peer == TIEFIGHTER]
    assert tie.http == (LANDING,)


def test_an_l4_allow_for_the_same_peer_and_port_lets_every_request_through() -> None:
    """Cilium keeps the redirect (requests stay visible as HTTP flows) with `http: [{}]`."""
    repo = starwars(DEMO.read_text(), plain("l4", "class: tiefighter"))
    (tie,) = [e for e in ingress(repo) if e.peer == TIEFIGHTER]
    assert tie.http == (ALLOW_ALL, LANDING)
    assert repo.entry_count(DEATHSTAR) == 2          # one policy-map entry per peer and port
    repo.delete(PolicyKey("default", "rule1"))
    assert [e for e in ingress(repo) if e.peer == TIEFIGHTER] == [
        Entry(IN, TIEFIGHTER, TCP, 80, 80, ALLOW)]   # deleting the L7 policy: plain again


def test_several_contributions_to_one_entry_count_once() -> None:
    repo = starwars(DEMO.read_text(), plain("l4", "class: tiefighter"),
                    l7("more", "class: tiefighter", "[{method: GET}]"))
    assert repo.entry_count(DEATHSTAR) == 2 == len(ingress(repo))
    repo.delete(PolicyKey("default", "l4"))
    assert repo.entry_count(DEATHSTAR) == 2
    repo.delete(PolicyKey("default", "rule1"))
    assert repo.entry_count(DEATHSTAR) == 1


def test_an_l3_only_allow_for_the_peer_also_opens_its_l7_port() -> None:
    repo = starwars(DEMO.read_text(), plain("l3", "class: tiefighter", port=None))
    tie = [e for e in ingress(repo) if e.peer == TIEFIGHTER]
    assert tie == [Entry(IN, TIEFIGHTER, 0, 0, 0, ALLOW),
                   Entry(IN, TIEFIGHTER, TCP, 80, 80, ALLOW, (ALLOW_ALL, LANDING))]


def test_an_any_peer_l4_allow_reaches_the_peer_specific_l7_entry() -> None:
    """The datapath picks the tiefighter's own entry first: it must pass every request, as
    Cilium's wildcard selector with `http: [{}]` on the port does."""
    repo = starwars(DEMO.read_text(), plain("any", None))
    assert ingress(repo) == [
        Entry(IN, 0, TCP, 80, 80, ALLOW),
        Entry(IN, DEATHSTAR, TCP, 80, 80, ALLOW, (ALLOW_ALL, LANDING)),
        Entry(IN, TIEFIGHTER, TCP, 80, 80, ALLOW, (ALLOW_ALL, LANDING))]


def test_any_peer_l7_rules_reach_the_peer_specific_l7_entry() -> None:
    repo = starwars(DEMO.read_text(), l7("any", None, "[{method: GET}]"))
    assert ingress(repo) == [
        Entry(IN, 0, TCP, 80, 80, ALLOW, (HttpRule("GET"),)),
        Entry(IN, DEATHSTAR, TCP, 80, 80, ALLOW, (HttpRule("GET"), LANDING)),
        Entry(IN, TIEFIGHTER, TCP, 80, 80, ALLOW, (HttpRule("GET"), LANDING))]


def test_an_l7_range_is_cut_where_other_allows_start_or_end_inside_it() -> None:
    """Cilium decides per port; the datapath picks one entry per port (the peer's own first),
    so the tiefighter's 80-83 L7 entry is cut where the any-peer allow on 80 and its own GET
    rule on 82-90 begin and end."""
    repo = starwars(policy("range", "  - fromEndpoints: [{matchLabels: {class: tiefighter}}]\n"
                                    "    toPorts:\n"
                                    "    - ports: [{port: '80', endPort: 83, protocol: TCP}]\n"
                                    "      rules: {http: [{method: POST}]}\n"
                                    "    - ports: [{port: '82', endPort: 90, protocol: TCP}]\n"
                                    "      rules: {http: [{method: GET}]}\n"),
                    plain("any", None, "80"))
    get, post = HttpRule("GET"), HttpRule("POST")
    assert ingress(repo) == [
        Entry(IN, 0, TCP, 80, 80, ALLOW),
        Entry(IN, TIEFIGHTER, TCP, 80, 80, ALLOW, (ALLOW_ALL, post)),
        Entry(IN, TIEFIGHTER, TCP, 81, 81, ALLOW, (post,)),
        Entry(IN, TIEFIGHTER, TCP, 82, 83, ALLOW, (get, post)),
        Entry(IN, TIEFIGHTER, TCP, 84, 90, ALLOW, (get,))]
    resolved = repo.resolved(DEATHSTAR, origins=True)
    assert [str(r) for r in resolved.origins[resolved.entries[1]]] == [
        "default/any spec.ingress[0]", "default/range spec.ingress[0]"]


def test_deny_wins_before_any_proxying() -> None:
    repo = starwars(DEMO.read_text(), plain("deny", "class: tiefighter", kind="ingressDeny"))
    landing = HttpRequest("POST", "/v1/request-landing", "deathstar")
    assert lookup_request(repo.resolved(DEATHSTAR), IN, TIEFIGHTER, TCP, 80,
                          landing) is TraceVerdict.DENIED
    rules = list(repo.rules())
    result = trace(rules, pod(org="empire", **{"class": "tiefighter"}),
                   pod(org="empire", **{"class": "deathstar"}), 80, TCP, landing)
    assert result.verdict is TraceVerdict.DENIED
    assert str(result.ingress.decided_by) == "default/deny spec.ingressDeny[0]"


def test_unchanged_resolution_gives_byte_identical_subscription_messages() -> None:
    one = starwars(DEMO.read_text(), l7("more", "class: tiefighter", "[{method: GET}, {}]"))
    two = starwars(l7("more", "class: tiefighter", "[{}, {method: GET}]"), DEMO.read_text())

    def message(repo: PolicyRepository) -> bytes:
        view = EnginePolicySource(repo).entries_for(DEATHSTAR)
        return policy_change(DEATHSTAR, view).SerializeToString()

    assert message(one) == message(two)
    changes = one.apply(parse_policies(DEMO.read_text()))   # the same document again
    assert changes == frozenset()


# -- properties ---------------------------------------------------------------------------------

NS = "k8s:io.kubernetes.pod.namespace"
APPS = ["a", "b", "c"]
identity_labels = st.sampled_from(APPS).map(
    lambda app: frozenset({f"{NS}=default", f"k8s:app={app}"}))
http_items = st.lists(st.sampled_from([
    {}, {"method": "GET"}, {"path": "/a"}, {"method": "POST", "path": "/v1/request-landing"},
    {"headers": ["X-Ok"]}]), min_size=1, max_size=2)
port_items = st.sampled_from([{"port": "80", "protocol": "TCP"},
                              {"port": "80", "endPort": 81, "protocol": "TCP"},
                              {"port": "81", "endPort": 82, "protocol": "TCP"},
                              {"port": "81", "protocol": "TCP"}])
plain_ports = st.sampled_from([{"port": "80", "protocol": "TCP"}, {"port": "80"},
                               {"port": "80", "endPort": 81, "protocol": "TCP"},
                               {"port": "82", "endPort": 83}, {"protocol": "TCP"}])


@st.composite
def l7_rule(draw: Any, side: str, deny: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out[f"{side}Endpoints"] = [{"matchLabels": {"app": draw(st.sampled_from(APPS))}}]
    elif draw(st.booleans()):
        out[f"{side}Entities"] = ["all"]
    items: list[dict[str, Any]] = []
    if deny or draw(st.booleans()):
        items.append({"ports": [draw(plain_ports)]})
    if not deny and draw(st.booleans()):
        items.append({"ports": [draw(port_items)], "rules": {"http": draw(http_items)}})
    if items:
        out["toPorts"] = items
    return out


@st.composite
def l7_policy(draw: Any, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"endpointSelector": draw(st.sampled_from(
        [{}, {"matchLabels": {"app": "a"}}, {"matchLabels": {"app": "b"}}]))}
    for section, side, deny in (("ingress", "from", False), ("egress", "to", False),
                                ("ingressDeny", "from", True)):
        if draw(st.integers(0, 2 if deny else 1)) == 0:
            spec[section] = draw(st.lists(l7_rule(side, deny), min_size=1, max_size=2))
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}


operation = st.one_of(
    st.tuples(st.just("add"), st.integers(256, 261), identity_labels),
    st.tuples(st.just("remove"), st.integers(256, 261)),
    st.tuples(st.just("upsert"), st.sampled_from(["p0", "p1", "p2"]).flatmap(l7_policy)),
    st.tuples(st.just("delete"), st.sampled_from(["p0", "p1", "p2"])),
)
requests = st.sampled_from([HttpRequest("GET", "/a"), HttpRequest("PUT", "/a"),
                            HttpRequest("POST", "/v1/request-landing"),
                            HttpRequest("DELETE", "/x", headers=[("X-Ok", "1")])])


def run(repo: PolicyRepository, op: tuple[Any, ...]) -> frozenset[int]:
    if op[0] == "add":
        return repo.add_identity(Identity(op[1], op[2]))
    if op[0] == "remove":
        return repo.remove_identity(op[1])
    if op[0] == "upsert":
        return repo.apply(parse_policies(json.dumps(op[1])))
    return repo.delete(PolicyKey("default", op[1]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operation, max_size=20))
def test_l7_incremental_equals_full_recompute_and_reports_changes(
        ops: list[tuple[Any, ...]]) -> None:
    repo = PolicyRepository()
    current = repo.resolve_all()
    for op in ops:
        changed = run(repo, op)
        after = repo.resolve_all()
        assert after == repo.full_recompute()
        for identity, resolved in after.items():
            if not any(e.l7 for e in resolved.entries):  # (L7 range pieces are not counted)
                assert repo.entry_count(identity) == len(resolved.entries)
            keys = [(e.direction, e.peer, e.protocol, e.port_lo, e.port_hi, e.verdict)
                    for e in resolved.entries]
            assert keys == sorted(set(keys))                      # sorted, one entry per key
            assert all(list(e.http) == sorted(set(e.http)) for e in resolved.entries)
            assert all(not e.http for e in resolved.entries if e.verdict is Verdict.DENY)
        differing = {i for i in current.keys() | after.keys() if current.get(i) != after.get(i)}
        assert differing <= changed, f"{op} changed {differing - changed} without reporting"
        current = after


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["p0", "p1", "p2", "p3"]).flatmap(l7_policy), min_size=1,
                max_size=4), st.sampled_from([80, 81, 82, 83, 443]), requests)
def test_trace_of_a_request_agrees_with_entries_and_the_proxy(
        docs: list[dict[str, Any]], port: int, request: HttpRequest) -> None:
    """Union semantics, checked against what the datapath and the proxy would do."""
    repo = PolicyRepository()
    for i, app in enumerate(APPS):
        repo.add_identity(Identity(256 + i, frozenset({f"{NS}=default", f"k8s:app={app}"})))
    for doc in docs:
        repo.apply(parse_policies(json.dumps(doc)))
    identities = {i.id: i.labels for i in repo.identities() if i.id >= 256}
    resolved = repo.resolve_all()
    rules = list(repo.rules())
    for src, src_labels in identities.items():
        for dst, dst_labels in identities.items():
            result = trace(rules, src_labels, dst_labels, port, TCP, request)
            egress = lookup_request(resolved.get(src, ResolvedPolicy(src)), Direction.EGRESS,
                                    dst, TCP, port, request)
            ingress_ = lookup_request(resolved.get(dst, ResolvedPolicy(dst)), IN, src, TCP,
                                      port, request)
            assert (result.egress.verdict, result.ingress.verdict) == (egress, ingress_)
