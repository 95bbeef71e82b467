"""Named ports in `toPorts` (`port: http`), Cilium's meaning: an ingress rule's name resolves
against the selected endpoint's own named ports, an egress rule's against every endpoint's.
Trace and resolved entries agree; the incremental engine equals a recompute."""

from __future__ import annotations

import random

import pytest

from controlplane.policy import (
    Direction,
    Identity,
    PolicyRepository,
    TraceVerdict,
    parse_policies,
    trace,
)
from controlplane.policy.model import NamedPorts

from .helpers import lookup, pod
from .test_policy_parse import HEAD, problems
from .test_policy_truth_table import cnp

ALLOWED, DENIED = TraceVerdict.ALLOWED, TraceVerdict.DENIED
TCP, UDP = 6, 17
DB, CACHE, WEB = pod(app="db"), pod(app="cache"), pod(app="web")
IDS = {DB: 1000, CACHE: 1001, WEB: 1002}
PORTS: dict[frozenset[str], NamedPorts] = {
    DB: {"http": frozenset({(TCP, 8080)}), "dns": frozenset({(UDP, 5353)})},
    CACHE: {"http": frozenset({(TCP, 9090)})},
}

INGRESS_HTTP = cnp("ingress-http", """
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: http, protocol: TCP}]}]
""")
INGRESS_ANY_PROTO = cnp("ingress-dns", """
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - toPorts: [{ports: [{port: dns}]}]
""")
INGRESS_WRONG_PROTO = cnp("ingress-dns-tcp", """
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - toPorts: [{ports: [{port: dns, protocol: TCP}]}]
""")
EGRESS_HTTP = cnp("egress-http", """
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: http}]}]
""")
DENY_HTTP = cnp("deny-http", """
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{}]
  ingressDeny:
  - toPorts: [{ports: [{port: http}]}]
""")
L7_HTTP = cnp("l7-http", """
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - toPorts:
    - ports: [{port: http, protocol: TCP}]
      rules: {http: [{method: GET}]}
""")


def repo_with(policies: str, ports: dict[frozenset[str], NamedPorts]) -> PolicyRepository:
    repo = PolicyRepository()
    for labels, ident in IDS.items():
        repo.add_identity(Identity(ident, labels))
    for labels, named in ports.items():
        repo.set_named_ports(IDS[labels], named)
    repo.apply(parse_policies(policies))
    return repo


ROWS = [
    ("ingress: the subject's number", INGRESS_HTTP, WEB, DB, 8080, TCP, ALLOWED),
    ("ingress: another endpoint's number", INGRESS_HTTP, WEB, DB, 9090, TCP, DENIED),
    ("ingress: name absent on the subject", INGRESS_HTTP.replace("app: db}}\n  ingress",
                                                                  "app: web}}\n  ingress"),
     CACHE, WEB, 8080, TCP, DENIED),
    ("ingress: protocol from the port", INGRESS_ANY_PROTO, WEB, DB, 5353, UDP, ALLOWED),
    ("ingress: protocol from the port, not TCP", INGRESS_ANY_PROTO, WEB, DB, 5353, TCP, DENIED),
    ("ingress: rule protocol must match", INGRESS_WRONG_PROTO, WEB, DB, 5353, UDP, DENIED),
    ("egress: every endpoint's numbers", EGRESS_HTTP, WEB, DB, 9090, TCP, ALLOWED),
    ("egress: the peer's number", EGRESS_HTTP, WEB, DB, 8080, TCP, ALLOWED),
    ("egress: an unnamed number", EGRESS_HTTP, WEB, DB, 80, TCP, DENIED),
    ("deny: named port denied", DENY_HTTP, WEB, DB, 8080, TCP, DENIED),
    ("deny: other ports allowed", DENY_HTTP, WEB, DB, 80, TCP, ALLOWED),
    ("L7 on a named port", L7_HTTP, WEB, DB, 8080, TCP, ALLOWED),
    ("L7 on a named port: other port", L7_HTTP, WEB, DB, 80, TCP, DENIED),
]


@pytest.mark.parametrize(("name", "policies", "src", "dst", "port", "protocol", "expected"),
                         ROWS, ids=[r[0] for r in ROWS])
def test_named_port_rows(name: str, policies: str, src: frozenset[str], dst: frozenset[str],
                         port: int, protocol: int, expected: TraceVerdict) -> None:
    repo = repo_with(policies, PORTS)
    rules = [r for p in parse_policies(policies) for r in p.rules]
    traced = trace(rules, src, dst, port, protocol,
                   named=(repo.named_ports(IDS[dst]), repo.named_ports()))
    assert traced.verdict is expected
    egress = lookup(repo.resolved(IDS[src]), Direction.EGRESS, IDS[dst], protocol, port)
    ingress = lookup(repo.resolved(IDS[dst]), Direction.INGRESS, IDS[src], protocol, port)
    assert (egress, ingress) == (traced.egress.verdict, traced.ingress.verdict)
    assert repo.resolve_all() == repo.full_recompute()


def test_entries_follow_named_ports() -> None:
    repo = repo_with(INGRESS_HTTP + EGRESS_HTTP, {})
    assert [str(e) for e in repo.resolved(IDS[DB]).entries] == []
    changed = repo.set_named_ports(IDS[DB], PORTS[DB])
    assert changed == {IDS[DB], IDS[WEB]}  # ingress of db, egress of every subject
    assert [str(e) for e in repo.resolved(IDS[DB]).entries] == [
        f"ingress allow peer={IDS[WEB]} 8080/TCP"]
    assert [str(e) for e in repo.resolved(IDS[WEB]).entries] == [
        f"egress allow peer={IDS[DB]} 8080/TCP"]
    repo.set_named_ports(IDS[CACHE], PORTS[CACHE])
    assert [str(e) for e in repo.resolved(IDS[WEB]).entries] == [
        f"egress allow peer={IDS[DB]} 8080/TCP", f"egress allow peer={IDS[DB]} 9090/TCP"]
    assert repo.set_named_ports(IDS[CACHE], PORTS[CACHE]) == frozenset()
    repo.set_named_ports(IDS[DB], {})
    assert repo.resolved(IDS[DB]).entries == ()
    assert repo.resolve_all() == repo.full_recompute()


@pytest.mark.parametrize("seed", range(10))
def test_incremental_equals_full_recompute(seed: int) -> None:
    rng = random.Random(seed)
    policies = [p for text in (INGRESS_HTTP, INGRESS_ANY_PROTO, EGRESS_HTTP, DENY_HTTP, L7_HTTP)
                for p in parse_policies(text)]
    repo = PolicyRepository()
    events = ([("id", labels) for labels in IDS] + [("ports", labels) for labels in PORTS]
              + [("policy", i) for i in range(len(policies))])
    rng.shuffle(events)
    for kind, what in events + rng.sample(events, len(events) // 2):
        if kind == "id":
            assert isinstance(what, frozenset)
            repo.add_identity(Identity(IDS[what], what))
        elif kind == "ports":
            assert isinstance(what, frozenset)
            repo.set_named_ports(IDS[what], PORTS[what] if rng.random() < 0.7 else {})
        else:
            assert isinstance(what, int)
            if repo.get_policy(policies[what].key) is not None and rng.random() < 0.4:
                repo.delete(policies[what].key)
            else:
                repo.apply([policies[what]])
        assert repo.resolve_all() == repo.full_recompute()


def test_named_port_forms() -> None:
    (policy,) = parse_policies(HEAD + """spec:
  endpointSelector: {}
  ingress:
  - toPorts: [{ports: [{port: http, protocol: TCP}, {port: dns-udp}, {port: "80"}]}]
""")
    assert [str(p) for p in policy.rules[0].ports] == ["dns-udp/ANY", "80/ANY", "http/TCP"]


@pytest.mark.parametrize(("port", "field", "words"), [
    ("{port: HTTP}", "port", "neither a port number nor a port name"),
    ("{port: web--x}", "port", "neither a port number nor a port name"),
    ("{port: a-very-long-port-name}", "port", "neither a port number nor a port name"),
    ("{port: http, endPort: 90}", "endPort", "needs a numeric port"),
    ("{port: '-1'}", "port", "neither a port number nor a port name"),
])
def test_named_port_rejected(port: str, field: str, words: str) -> None:
    found = problems(HEAD + "spec:\n  endpointSelector: {}\n  ingress:\n"
                            f"  - toPorts: [{{ports: [{port}]}}]\n")
    path = f"spec.ingress[0].toPorts[0].ports[0].{field}"
    assert list(found) == [path], found
    assert words in found[path]
