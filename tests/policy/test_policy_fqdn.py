"""toFQDNs and rules.dns: Cilium's name patterns, validation with paths, resolution and trace."""

from __future__ import annotations

import pytest

from bulkhead import fqdnmatch
from bulkhead.httprules import HttpRequest, HttpRule
from controlplane.policy import Identity, PolicyRepository, TraceVerdict, parse_policies, trace
from controlplane.policy.model import RESERVED_IDENTITIES, Direction, Verdict
from controlplane.policy.parse import PolicyValidationError

from .helpers import lookup_request, pod, reserved, resolved_verdicts, traced

TCP, UDP = 6, 17
ALLOWED, DENIED = TraceVerdict.ALLOWED, TraceVerdict.DENIED
HEAD = ("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n"
        "metadata: {name: fq, namespace: default}\n")
CLIENT = pod(app="client")


def cnp(spec: str) -> str:
    return f"{HEAD}spec:\n  endpointSelector: {{matchLabels: {{app: client}}}}\n{spec}\n"


def fqdn(pattern: str) -> frozenset[str]:
    """The identity a toFQDNs selector gets (what an agent's learnt addresses stand in for)."""
    return frozenset({fqdnmatch.label(fqdnmatch.canonical(pattern))})


def problems(text: str) -> dict[str, str]:
    with pytest.raises(PolicyValidationError) as err:
        parse_policies(text)
    return {v.field: v.description for v in err.value.violations}


# -- Cilium's pattern semantics ------------------------------------------------------------

@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("api.world.test", "api.world.test", True),
    ("api.world.test", "API.World.Test.", True),          # case-insensitive, trailing dot
    ("api.world.test.", "api.world.test", True),
    ("api.world.test", "xapi.world.test", False),
    ("api.world.test", "a.api.world.test", False),
    ("*.world.test", "api.world.test", True),
    ("*.world.test", "a.b.world.test", False),            # `*` stays within one label
    ("*.world.test", "world.test", False),
    ("api*.world.test", "api.world.test", True),          # zero characters
    ("api*.world.test", "api-v2.world.test", True),
    ("a*i.world.test", "api.world.test", True),
    ("**.world.test", "api.world.test", True),            # one or more whole labels
    ("**.world.test", "a.b.world.test", True),
    ("**.world.test", "world.test", False),
    ("*", "anything.at.all", True),                       # stars alone: every name
    ("**", "x.y", True),
    ("*.", "x", True),
    ("api.world.test", "api.world.test.evil", False),
])
def test_cilium_pattern_semantics(pattern: str, name: str, expected: bool) -> None:
    assert fqdnmatch.matches(fqdnmatch.canonical(pattern), name) is expected


def test_canonical_forms() -> None:
    assert fqdnmatch.canonical("API.World.test") == "api.world.test."
    assert fqdnmatch.canonical("***") == "*"
    assert fqdnmatch.canonical("*.") == "*"


# -- parsing -------------------------------------------------------------------------------

def test_valid_fqdn_policy_parses_to_selectors_and_dns_items() -> None:
    policy, = parse_policies(cnp("""  egress:
  - toEntities: [host]
    toPorts:
    - ports: [{port: "53", protocol: ANY}]
      rules:
        dns: [{matchPattern: "*.World.test"}, {matchName: api.world.test}]
  - toFQDNs: [{matchName: API.world.test}, {matchPattern: "**.world.test"}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]"""))
    dns_rule, fqdn_rule = policy.rules
    assert [item.patterns for item in dns_rule.dns] == [("*.world.test.", "api.world.test.")]
    assert [str(p) for p in dns_rule.ports] == ["53/ANY"]
    assert [str(p) for p in fqdn_rule.peers] == ["fqdn:api.world.test.", "fqdn:**.world.test."]
    assert [str(p) for p in fqdn_rule.ports] == ["80/TCP"]


def test_to_fqdns_without_ports_allows_all_ports() -> None:
    policy, = parse_policies(cnp("  egress:\n  - toFQDNs: [{matchName: api.world.test}]"))
    assert [str(p) for p in policy.rules[0].ports] == ["*/ANY"]


@pytest.mark.parametrize(("spec", "field", "words"), [
    ("  egress:\n  - toFQDNs: [{matchName: 'a b.test'}]",
     "spec.egress[0].toFQDNs[0].matchName", "letters, digits"),
    ("  egress:\n  - toFQDNs: [{matchPattern: 'a/b.test'}]",
     "spec.egress[0].toFQDNs[0].matchPattern", "'*'"),
    ("  egress:\n  - toFQDNs: [{matchName: ''}]",
     "spec.egress[0].toFQDNs[0].matchName", "must not be empty"),
    ("  egress:\n  - toFQDNs: [{matchName: 'a..b'}]",
     "spec.egress[0].toFQDNs[0].matchName", "empty label"),
    ("  egress:\n  - toFQDNs: [{matchName: " + "a" * 256 + "}]",
     "spec.egress[0].toFQDNs[0].matchName", "at most 255"),
    ("  egress:\n  - toFQDNs: [{matchName: a.test, matchPattern: '*.test'}]",
     "spec.egress[0].toFQDNs[0]", "exactly one of matchName, matchPattern"),
    ("  egress:\n  - toFQDNs: [{}]",
     "spec.egress[0].toFQDNs[0]", "exactly one"),
    ("  egress:\n  - toFQDNs: [{matchName: [a]}]",
     "spec.egress[0].toFQDNs[0].matchName", "must be a string"),
    ("  egress:\n  - toFQDNs: [{matchRegex: a}]",
     "spec.egress[0].toFQDNs[0].matchRegex", "unknown field"),
    ("  egress:\n  - toFQDNs: {matchName: a}",
     "spec.egress[0].toFQDNs", "must be a list"),
    ("  egress:\n  - toFQDNs: [{matchName: a.test}]\n    toEndpoints: [{}]",
     "spec.egress[0].toFQDNs", "cannot be combined"),
    ("  egress:\n  - toFQDNs: [{matchName: a.test}]\n    toCIDR: [10.0.0.0/8]",
     "spec.egress[0].toFQDNs", "cannot be combined"),
    ("  egressDeny:\n  - toFQDNs: [{matchName: a.test}]",
     "spec.egressDeny[0].toFQDNs", "no FQDN deny"),
    ("  ingress:\n  - toFQDNs: [{matchName: a.test}]",
     "spec.ingress[0].toFQDNs", "only egress"),
    ("  egress:\n  - toPorts:\n    - ports: [{port: '53', protocol: ANY}]\n"
     "      rules: {dns: []}",
     "spec.egress[0].toPorts[0].rules.dns", "must not be empty"),
    ("  egress:\n  - toPorts:\n    - ports: [{port: '53', protocol: ANY}]\n"
     "      rules: {dns: [{matchPattern: 'x y'}]}",
     "spec.egress[0].toPorts[0].rules.dns[0].matchPattern", "letters, digits"),
    ("  egress:\n  - toPorts:\n    - ports: [{port: '53', protocol: ANY}]\n"
     "      rules: {dns: [{matchName: a, matchPattern: b}]}",
     "spec.egress[0].toPorts[0].rules.dns[0]", "exactly one"),
    ("  egress:\n  - toPorts:\n    - ports: [{protocol: UDP}]\n"
     "      rules: {dns: [{matchPattern: '*'}]}",
     "spec.egress[0].toPorts[0].ports[0].port", "is required with DNS rules"),
    ("  egress:\n  - toPorts:\n    - ports: [{port: '53', protocol: TCP}]\n"
     "      rules: {dns: [{matchPattern: '*'}], http: [{}]}",
     "spec.egress[0].toPorts[0].rules", "one kind of L7 rule"),
    ("  egress:\n  - toPorts:\n    - ports: [{port: '53', protocol: ANY}]\n"
     "      rules: {dns: {matchPattern: '*'}}",
     "spec.egress[0].toPorts[0].rules.dns", "must be a list"),
    ("  ingress:\n  - toPorts:\n    - ports: [{port: '53', protocol: ANY}]\n"
     "      rules: {dns: [{matchPattern: '*'}]}",
     "spec.ingress[0].toPorts[0].rules.dns", "only allowed in egress"),
    ("  egressDeny:\n  - toPorts:\n    - ports: [{port: '53', protocol: ANY}]\n"
     "      rules: {dns: [{matchPattern: '*'}]}",
     "spec.egressDeny[0].toPorts[0].rules", "deny rules cannot carry L7 rules"),
])
def test_invalid_forms_are_refused_with_their_path(spec: str, field: str, words: str) -> None:
    found = problems(cnp(spec))
    assert field in found, found
    assert words in found[field]


# -- resolution ----------------------------------------------------------------------------

POLICY = cnp("""  egress:
  - toEntities: [host]
    toPorts:
    - ports: [{port: "53", protocol: ANY}]
      rules:
        dns: [{matchPattern: "*.world.test"}]
  - toFQDNs: [{matchName: api.world.test}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]""")


@pytest.mark.parametrize(("dst", "port", "protocol", "expected"), [
    (fqdn("api.world.test"), 80, TCP, ALLOWED),
    (fqdn("api.world.test"), 443, TCP, DENIED),
    (fqdn("other.world.test"), 80, TCP, DENIED),
    (fqdn("*.world.test"), 80, TCP, DENIED),
    (reserved("world"), 80, TCP, DENIED),
    (reserved("host"), 53, UDP, ALLOWED),
    (reserved("host"), 53, TCP, ALLOWED),
    (reserved("host"), 80, TCP, DENIED),
    (pod(app="db"), 80, TCP, DENIED),
])
def test_truth_table(dst: frozenset[str], port: int, protocol: int,
                     expected: TraceVerdict) -> None:
    """Trace (label sets) and the resolved entries (identities) agree on every row."""
    verdict, egress, _ = traced(POLICY, CLIENT, dst, port, protocol)
    assert verdict is expected
    assert resolved_verdicts(POLICY, CLIENT, dst, port, protocol)[0] is egress


def test_selector_identities_follow_the_policies() -> None:
    """Each toFQDNs selector is an `fqdn:` identity (never an endpoint), entries name it, the
    DNS patterns reach the subject's resolved policy, and deleting the policy drops both."""
    repo = PolicyRepository()
    repo.add_identity(Identity.of(300, CLIENT))
    policy, = parse_policies(POLICY)
    changed = repo.apply([policy])
    assert 300 in changed
    by_labels = {i.labels: i.id for i in repo.identities()}
    selector_id = by_labels[fqdn("api.world.test")]
    resolved = repo.resolved(300)
    assert resolved.dns == ("*.world.test.",)
    assert [(e.direction, e.peer, e.port_lo, e.verdict) for e in resolved.entries
            if e.peer == selector_id] == [(Direction.EGRESS, selector_id, 80, Verdict.ALLOW)]
    assert selector_id not in repo.resolve_all()  # not an endpoint: no policy of its own
    assert repo.resolve_all() == repo.full_recompute()
    repo.delete(policy.key)
    assert fqdn("api.world.test") not in {i.labels for i in repo.identities()}
    assert repo.resolved(300).dns == ()


# -- toFQDNs with HTTP rules (Cilium: the learnt addresses' connections go to the proxy) -----

HTTP_POLICY = cnp("""  egress:
  - toEntities: [host]
    toPorts:
    - ports: [{port: "53", protocol: ANY}]
      rules:
        dns: [{matchPattern: "*.world.test"}]
  - toFQDNs: [{matchName: api.world.test}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        http: [{method: GET, path: /allowed}]""")


@pytest.mark.parametrize(("dst", "port", "method", "path", "expected"), [
    (fqdn("api.world.test"), 80, "GET", "/allowed", ALLOWED),
    (fqdn("api.world.test"), 80, "GET", "/other", DENIED),
    (fqdn("api.world.test"), 80, "POST", "/allowed", DENIED),
    (fqdn("api.world.test"), 443, "GET", "/allowed", DENIED),
    (fqdn("other.world.test"), 80, "GET", "/allowed", DENIED),
    (reserved("world"), 80, "GET", "/allowed", DENIED),
])
def test_truth_table_with_http_rules(dst: frozenset[str], port: int, method: str, path: str,
                                     expected: TraceVerdict) -> None:
    """Trace and the resolved entries agree, request by request: the FQDN selector's entry
    carries the HTTP rules, which the proxy checks for the addresses learnt for it."""
    request = HttpRequest(method, path)
    result = trace(parse_policies(HTTP_POLICY)[0].rules, CLIENT, dst, port, TCP, request)
    assert result.egress.verdict is expected
    repo = PolicyRepository()
    repo.add_identity(Identity.of(300, CLIENT))
    repo.apply(parse_policies(HTTP_POLICY))
    by_labels = {i.labels: i.id for i in repo.identities()}
    peer = by_labels.get(dst) or next(
        (i for i, n in RESERVED_IDENTITIES.items() if dst == reserved(n)), 999)
    assert lookup_request(repo.resolved(300), Direction.EGRESS, peer, TCP, port,
                          request) is expected


def test_an_fqdn_selector_with_http_rules_resolves_to_an_l7_entry() -> None:
    repo = PolicyRepository()
    repo.add_identity(Identity.of(300, CLIENT))
    repo.apply(parse_policies(HTTP_POLICY))
    selector_id = {i.labels: i.id for i in repo.identities()}[fqdn("api.world.test")]
    entry, = [e for e in repo.resolved(300).entries if e.peer == selector_id]
    assert (entry.direction, entry.protocol, entry.port_lo, entry.verdict) == (
        Direction.EGRESS, TCP, 80, Verdict.ALLOW)
    assert entry.l7 and entry.http == (HttpRule("GET", "/allowed"),)
