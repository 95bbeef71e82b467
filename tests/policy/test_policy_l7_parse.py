"""`toPorts[].rules.http`: Cilium's fields accepted, everything Cilium refuses (or Bulkhead does
not implement) refused with its path, nothing half-parsed."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkhead.httprules import HeaderMatch, HttpRule, Mismatch
from controlplane.policy import PolicyValidationError, parse_policies
from controlplane.policy.model import HttpPorts, PortRange, Protocol

HEAD = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\n"
DEMO = Path(__file__).resolve().parents[2] / "integration" / "lab" / "sw_l3_l4_l7_policy.yaml"


def problems(text: str) -> dict[str, str]:
    with pytest.raises(PolicyValidationError) as caught:
        parse_policies(text)
    return {v.field: v.description for v in caught.value.violations}


def one_rule(body: str):  # type: ignore[no-untyped-def]
    (policy,) = parse_policies(HEAD + "spec:\n  endpointSelector: {}\n" + body)
    (rule,) = policy.rules
    return rule


def test_every_cilium_http_field_is_accepted_on_ingress_and_egress() -> None:
    for section, side in (("ingress", "fromEndpoints"), ("egress", "toEndpoints")):
        rule = one_rule(f"""  {section}:
  - {side}: [{{matchLabels: {{org: empire}}}}]
    toPorts:
    - ports: [{{port: '80', protocol: TCP}}, {{port: 8000, endPort: 8080, protocol: tcp}}]
      rules:
        http:
        - method: POST
          path: /v1/request-landing
        - {{method: GET, path: '/v1/.*', host: 'deathstar(\\.default)?',
            headers: ['X-Token: yes', X-Present],
            headerMatches: [{{name: X-Must, value: v}}, {{name: X-Log, value: v, mismatch: LOG}},
                            {{name: X-Add, value: a, mismatch: ADD}}]}}
        - {{}}
""")
        assert rule.ports == ()          # no plain L4 port: only the L7 item
        assert rule.l7 == (HttpPorts(
            "toPorts[0]",
            (PortRange(Protocol.TCP, 80, 80), PortRange(Protocol.TCP, 8000, 8080)),
            (HttpRule("POST", "/v1/request-landing"),
             HttpRule("GET", "/v1/.*", r"deathstar(\.default)?", ("X-Token: yes", "X-Present"),
                      (HeaderMatch("X-Must", "v"), HeaderMatch("X-Log", "v", Mismatch.LOG),
                       HeaderMatch("X-Add", "a", Mismatch.ADD))),
             HttpRule())),)
        assert rule.port_matches(6, 8040) and not rule.port_matches(17, 80)


def test_plain_and_l7_items_of_one_rule_stay_apart() -> None:
    rule = one_rule("""  ingress:
  - toPorts:
    - ports: [{port: '22', protocol: TCP}]
    - ports: [{port: '80', protocol: TCP}]
      rules: {http: [{method: GET}]}
""")
    assert rule.ports == (PortRange(Protocol.TCP, 22, 22),)
    assert [item.path for item in rule.l7] == ["toPorts[1]"]
    assert rule.peers  # ports without peers: any peer, as for plain ports


def test_empty_rules_is_no_l7_rule_as_in_cilium() -> None:
    rule = one_rule("""  ingress:
  - toPorts:
    - ports: [{port: '80', protocol: TCP}]
      rules: {}
""")
    assert rule.ports == (PortRange(Protocol.TCP, 80, 80),) and rule.l7 == ()


def test_the_demo_policy_parses() -> None:
    (policy,) = parse_policies(DEMO.read_text())
    (rule,) = policy.rules
    assert rule.l7[0].http == (HttpRule("POST", "/v1/request-landing"),)


@pytest.mark.parametrize(("body", "field", "words"), [
    ("  ingress:\n  - toPorts:\n    - ports: [{port: '80', protocol: TCP}]\n"
     "      rules: {http: [{method: GET}, {path: '/v1/('}]}",
     "spec.ingress[0].toPorts[0].rules.http[1].path", "not a valid RE2"),
    ("  egress:\n  - toPorts:\n    - ports: [{port: '80', protocol: TCP}]\n"
     "      rules: {http: [{host: '*.example.com'}]}",
     "spec.egress[0].toPorts[0].rules.http[0].host", "not a valid RE2"),
    ("  ingress:\n  - toPorts:\n    - ports: [{port: '80', protocol: TCP}]\n"
     "      rules: {http: [{headers: ['Bad Name: x']}]}",
     "spec.ingress[0].toPorts[0].rules.http[0].headers[0]", "'Name' or 'Name: value'"),
    ("  ingress:\n  - toPorts:\n    - ports: [{port: '80', protocol: TCP}]\n"
     "      rules: {http: [{headerMatches: [{name: X, secret: {name: s, namespace: n}}]}]}",
     "spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].secret", "secrets"),
    ("  ingress:\n  - toPorts:\n    - ports: [{port: '80', protocol: TCP}]\n"
     "      rules: {http: [{headerMatches: [{name: X, mismatch: DROP}]}]}",
     "spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].mismatch", "unknown action"),
    ("  ingress:\n  - toPorts:\n    - ports: [{port: '80', protocol: TCP}]\n"
     "      rules: {http: [{headerMatches: [{value: x}]}]}",
     "spec.ingress[0].toPorts[0].rules.http[0].headerMatches[0].name", "is required"),
    ("  ingress:\n  - toPorts:\n    - ports: [{port: '80', protocol: TCP}]\n"
     "      rules: {http: [{method: GET, verb: PUT}]}",
     "spec.ingress[0].toPorts[0].rules.http[0].verb", "unknown field"),
    ("  ingress:\n  - toPorts:\n    - ports: [{port: '80', protocol: TCP}]\n"
     "      rules: {http: [{method: [GET]}]}",
     "spec.ingress[0].toPorts[0].rules.http[0].method", "must be a string"),
    ("  ingress:\n  - toPorts:\n    - ports: [{port: '80', protocol: TCP}]\n"
     "      rules: {http: []}",
     "spec.ingress[0].toPorts[0].rules.http", "must not be empty"),
    ("  ingress:\n  - toPorts:\n    - ports: [{port: '9092', protocol: TCP}]\n"
     "      rules: {kafka: [{topic: deathstar-plans}]}",
     "spec.ingress[0].toPorts[0].rules.kafka", "Kafka"),
    ("  ingress:\n  - toPorts:\n    - ports: [{port: '53', protocol: ANY}]\n"
     "      rules: {dns: [{matchPattern: '*'}]}",
     "spec.ingress[0].toPorts[0].rules.dns", "DNS rules are only allowed in egress"),
    ("  ingress:\n  - toPorts:\n    - ports: [{port: '80', protocol: TCP}]\n"
     "      rules: {l7proto: envoy.filters.x, l7: [{a: b}]}",
     "spec.ingress[0].toPorts[0].rules.l7proto", "generic L7"),
    ("  ingress:\n  - toPorts:\n    - ports: [{port: '80', protocol: TCP}]\n"
     "      rules: {l7proto: envoy.filters.x, l7: [{a: b}]}",
     "spec.ingress[0].toPorts[0].rules.l7", "generic L7"),
    ("  ingress:\n  - toPorts:\n    - ports: [{port: '80', protocol: TCP}]\n"
     "      rules: {grpc: []}",
     "spec.ingress[0].toPorts[0].rules.grpc", "unknown field"),
    ("  ingressDeny:\n  - toPorts:\n    - ports: [{port: '80', protocol: TCP}]\n"
     "      rules: {http: [{method: GET}]}",
     "spec.ingressDeny[0].toPorts[0].rules", "deny rules cannot carry L7 rules"),
    ("  egressDeny:\n  - toPorts:\n    - ports: [{port: '80', protocol: TCP}]\n"
     "      rules: {http: [{}]}",
     "spec.egressDeny[0].toPorts[0].rules", "deny rules cannot carry L7 rules"),
    # Cilium's PortRule sanitize: L7 rules (other than DNS) need TCP, given explicitly.
    ("  ingress:\n  - toPorts:\n    - ports: [{port: '80'}]\n      rules: {http: [{}]}",
     "spec.ingress[0].toPorts[0].ports[0].protocol", "only apply to TCP (not ANY)"),
    ("  ingress:\n  - toPorts:\n    - ports: [{port: '80', protocol: TCP}, "
     "{port: '80', protocol: UDP}]\n      rules: {http: [{}]}",
     "spec.ingress[0].toPorts[0].ports[1].protocol", "only apply to TCP (not UDP)"),
    ("  ingress:\n  - toPorts:\n    - ports: [{protocol: TCP}]\n      rules: {http: [{}]}",
     "spec.ingress[0].toPorts[0].ports[0].port", "is required with L7 rules"),
])
def test_refused_with_its_path(body: str, field: str, words: str) -> None:
    found = problems(HEAD + "spec:\n  endpointSelector: {}\n" + body + "\n")
    assert field in found, found
    assert words in found[field]


def test_several_problems_of_one_http_list_are_reported_together() -> None:
    found = problems(HEAD + """specs:
- endpointSelector: {}
  ingress:
  - toPorts:
    - ports: [{port: '80', protocol: TCP}]
      rules:
        http:
        - {path: '('}
        - {method: '[', headerMatches: [{name: X, secret: {name: s}}]}
        - {path: /ok}
""")
    assert set(found) == {"specs[0].ingress[0].toPorts[0].rules.http[0].path",
                          "specs[0].ingress[0].toPorts[0].rules.http[1].headerMatches[0].secret"}
