"""`toServices`: parse (every invalid form with its path) and expansion to the backends of the
services selected, checked by trace and by the resolved entries side by side."""

from __future__ import annotations

import pytest

from controlplane.policy import Identity, PolicyRepository, TraceVerdict, parse_policies, trace
from controlplane.policy.services import ServiceInfo, expand

from .helpers import pod
from .test_policy_parse import HEAD, problems

ALLOWED, DENIED = TraceVerdict.ALLOWED, TraceVerdict.DENIED
TCP = 6
WEB = pod(app="web")
DB = pod(app="db", tier="data")
DB_OTHER_NS = pod("other", app="db", tier="data")
CACHE = pod(app="cache")
DB_SVC = ServiceInfo("default", "db", ("team=data",), ("app=db",))
DB_SVC_OTHER = ServiceInfo("other", "db", (), ("app=db",))
CACHE_SVC = ServiceInfo("default", "cache", ("team=data",), ("app=cache",))
EXTERNAL = ServiceInfo("default", "external", ("team=data",), ())


def policy(egress: str, section: str = "egress") -> str:
    return (HEAD + "spec:\n  endpointSelector: {matchLabels: {app: web}}\n"
            f"  {section}:\n{egress}")


def verdict(text: str, services: list[ServiceInfo], dst: frozenset[str], port: int = 5432
            ) -> TraceVerdict:
    """The egress verdict of web -> dst, by trace and by resolved entries (they must agree)."""
    policies = [expand(p, services) for p in parse_policies(text)]
    traced = trace((r for p in policies for r in p.rules), WEB, dst, port, TCP).egress.verdict
    repo = PolicyRepository()
    repo.add_identity(Identity(1000, WEB))
    repo.add_identity(Identity(1001, dst))
    repo.apply(policies)
    resolved = repo.resolved(1000)
    if not resolved.egress_enforced:
        by_entries = ALLOWED
    else:
        matching = [e for e in resolved.entries if e.peer in (0, 1001)
                    and e.ports.covers(TCP, port) and e.direction.value == "egress"]
        denied = any(e.verdict.value == "deny" for e in matching)
        by_entries = ALLOWED if matching and not denied else DENIED
    assert by_entries is traced
    return traced


BY_NAME = policy("  - toServices: [{k8sService: {serviceName: db, namespace: default}}]\n")
BY_NAME_ANY_NS = policy("  - toServices: [{k8sService: {serviceName: db}}]\n")
BY_LABELS = policy("  - toServices:\n    - k8sServiceSelector: {selector: {matchLabels: "
                   "{team: data}}, namespace: default}\n")
WITH_PORT = policy("  - toServices: [{k8sService: {serviceName: db, namespace: default}}]\n"
                   "    toPorts: [{ports: [{port: '5432', protocol: TCP}]}]\n")
DENY = policy("  - toServices: [{k8sService: {serviceName: db}}]\n", "egressDeny") + \
    "  egress:\n  - toEndpoints: [{}]\n"


@pytest.mark.parametrize(("name", "text", "services", "dst", "port", "expected"), [
    ("by name: backend", BY_NAME, [DB_SVC, CACHE_SVC], DB, 5432, ALLOWED),
    ("by name: other pod", BY_NAME, [DB_SVC, CACHE_SVC], CACHE, 5432, DENIED),
    ("by name: service absent", BY_NAME, [CACHE_SVC], DB, 5432, DENIED),
    ("by name: no selector, no backends", BY_NAME, [ServiceInfo("default", "db")], DB, 5432,
     DENIED),
    ("by name: namespace given", BY_NAME, [DB_SVC_OTHER], DB_OTHER_NS, 5432, DENIED),
    ("by name: no namespace matches every one", BY_NAME_ANY_NS, [DB_SVC_OTHER], DB_OTHER_NS,
     5432, ALLOWED),
    ("by name: backends stay in the service's namespace", BY_NAME_ANY_NS, [DB_SVC_OTHER], DB,
     5432, DENIED),
    ("by labels: both services", BY_LABELS, [DB_SVC, CACHE_SVC, EXTERNAL], CACHE, 80, ALLOWED),
    ("by labels: unlabelled service", BY_LABELS,
     [ServiceInfo("default", "db", (), ("app=db",))], DB, 80, DENIED),
    ("with toPorts: the port", WITH_PORT, [DB_SVC], DB, 5432, ALLOWED),
    ("with toPorts: another port", WITH_PORT, [DB_SVC], DB, 22, DENIED),
    ("deny: backend", DENY, [DB_SVC], DB, 5432, DENIED),
    ("deny: other pod", DENY, [DB_SVC], CACHE, 5432, ALLOWED),
])
def test_to_services_rows(name: str, text: str, services: list[ServiceInfo],
                          dst: frozenset[str], port: int, expected: TraceVerdict) -> None:
    assert verdict(text, services, dst, port) is expected


def test_unexpanded_rule_allows_nothing_and_enforces() -> None:
    """Before (or without) services, a toServices rule with ports is no wildcard peer."""
    (parsed,) = parse_policies(WITH_PORT)
    (rule,) = parsed.rules
    assert rule.peers == () and [s.name for s in rule.services] == ["db"]
    assert verdict(WITH_PORT, [], DB) is DENIED


@pytest.mark.parametrize(("item", "field", "words"), [
    ("[{}]", "toServices[0]", "exactly one of k8sService or k8sServiceSelector"),
    ("[{k8sService: {serviceName: a}, k8sServiceSelector: {selector: {}}}]", "toServices[0]",
     "exactly one"),
    ("[{k8sService: {namespace: default}}]", "toServices[0].k8sService.serviceName",
     "is required"),
    ("[{k8sService: {serviceName: Bad_Name}}]", "toServices[0].k8sService.serviceName",
     "not a valid service name"),
    ("[{k8sService: {serviceName: 5}}]", "toServices[0].k8sService.serviceName",
     "must be a string"),
    ("[{k8sService: {serviceName: a, namespace: 'x y'}}]",
     "toServices[0].k8sService.namespace", "not a valid namespace"),
    ("[{k8sService: {serviceName: a, port: 80}}]", "toServices[0].k8sService.port",
     "unknown field"),
    ("[{k8sService: [a]}]", "toServices[0].k8sService", "must be a mapping"),
    ("[{k8sServiceSelector: {namespace: default}}]",
     "toServices[0].k8sServiceSelector.selector", "is required"),
    ("[{k8sServiceSelector: {selector: {matchLabels: {'a b': c}}}}]",
     "toServices[0].k8sServiceSelector.selector.matchLabels.a b", "not a valid label key"),
    ("[{k8sServiceSelector: {selector: {}, namespace: 7}}]",
     "toServices[0].k8sServiceSelector.namespace", "must be a string"),
    ("[{k8sServiceSelector: {selector: {}, extra: 1}}]",
     "toServices[0].k8sServiceSelector.extra", "unknown field"),
    ("{k8sService: {serviceName: a}}", "toServices", "must be a list"),
])
@pytest.mark.parametrize("section", ["egress", "egressDeny"])
def test_to_services_rejected(section: str, item: str, field: str, words: str) -> None:
    found = problems(policy(f"  - toServices: {item}\n", section))
    path = f"spec.{section}[0].{field}"
    assert list(found) == [path], found
    assert words in found[path]


@pytest.mark.parametrize("section", ["ingress", "ingressDeny"])
def test_to_services_is_egress_only(section: str) -> None:
    found = problems(policy("  - toServices: [{k8sService: {serviceName: a}}]\n", section))
    assert found == {f"spec.{section}[0].toServices": "unknown field"}
