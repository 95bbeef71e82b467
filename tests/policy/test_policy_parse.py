"""Validation: every problem reported at once, each naming its field; nothing half-parsed."""

from __future__ import annotations

import json

import pytest

from controlplane.policy import (
    PolicyKey,
    PolicyValidationError,
    canonical_json,
    parse_document,
    parse_policies,
    to_yaml,
)
from controlplane.policy.parse import MAX_APPLY_BYTES, MAX_LIST

HEAD = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\n"


def problems(text: str) -> dict[str, str]:
    with pytest.raises(PolicyValidationError) as caught:
        parse_policies(text)
    return {v.field: v.description for v in caught.value.violations}


def test_issue_example_path() -> None:
    found = problems(HEAD + """specs:
- endpointSelector: {}
- endpointSelector: {}
  ingress:
  - toPorts: [{ports: [{port: 70000, protocol: TCP}]}]
""")
    assert found == {"specs[1].ingress[0].toPorts[0].ports[0].port": "must be 1-65535"}


def test_every_problem_is_reported_at_once() -> None:
    found = problems("""apiVersion: cilium.io/v1
kind: CiliumNetworkPolicy
metadata: {name: Bad_Name}
spec:
  endpointSelector: {matchLabels: {org: 1}}
  ingress:
  - fromEndpoints: [{matchExpressions: [{key: a, operator: Near, values: [x]}]}]
    toPorts: [{ports: [{port: HTTP}]}]
  egress:
  - toFQDNs: [{matchName: "example com"}]
  - toCIDR: [not-an-ip]
    toEntities: [galaxy]
""")
    assert set(found) == {
        "apiVersion",
        "metadata.name",
        "spec.endpointSelector.matchLabels.org",
        "spec.ingress[0].fromEndpoints[0].matchExpressions[0].operator",
        "spec.ingress[0].toPorts[0].ports[0].port",
        "spec.egress[0].toFQDNs[0].matchName",
        "spec.egress[1].toCIDR[0]",
        "spec.egress[1].toEntities[0]",
    }
    assert "cilium.io/v2" in found["apiVersion"]
    assert found["spec.endpointSelector.matchLabels.org"] == "must be a string, not an integer"
    assert "neither a port number nor a port name" in \
        found["spec.ingress[0].toPorts[0].ports[0].port"]
    assert "letters, digits" in found["spec.egress[0].toFQDNs[0].matchName"]
    assert "unknown entity 'galaxy'" in found["spec.egress[1].toEntities[0]"]


@pytest.mark.parametrize(("spec", "field", "words"), [
    ("  endpointSelector: {}\n  ingress:\n  - fromEndpoints: [{}]\n    toPorts:\n"
     "    - ports: [{port: '80', protocol: TCP}]\n      rules: {kafka: [{topic: t}]}",
     "spec.ingress[0].toPorts[0].rules.kafka", "Kafka"),
    ("  nodeSelector: {}\n  ingress: [{}]", "spec.nodeSelector", "host policies"),
    ("  endpointSelector: {}\n  ingress:\n  - fromEndpoints: [{}]\n    colour: red",
     "spec.ingress[0].colour", "unknown field"),
    ("  endpointSelector: {}\n  ingress:\n  - toEndpoints: [{}]",
     "spec.ingress[0].toEndpoints", "unknown field"),
    ("  endpointSelector: {matchLabels: {a: b}, matchFields: {}}\n  ingress: [{}]",
     "spec.endpointSelector.matchFields", "unknown field"),
    ("  ingress: [{}]", "spec.endpointSelector", "required"),
    ("  endpointSelector: {}\n  ingress: {}", "spec.ingress", "must be a list, not a mapping"),
    ("  endpointSelector: []\n", "spec.endpointSelector", "must be a mapping, not a list"),
    ("  endpointSelector: {}\n  ingress:\n  - toPorts: [{ports: [{port: 0}]}]",
     "spec.ingress[0].toPorts[0].ports[0].port", "must be 1-65535"),
    ("  endpointSelector: {}\n  ingress:\n  - toPorts: [{ports: [{port: 90, endPort: 80}]}]",
     "spec.ingress[0].toPorts[0].ports[0].endPort", "must not be below port 90"),
    ("  endpointSelector: {}\n  ingress:\n  - toPorts: [{ports: [{port: 80, protocol: ICMP}]}]",
     "spec.ingress[0].toPorts[0].ports[0].protocol", "use icmps"),
    ("  endpointSelector: {}\n  ingress:\n  - toPorts: [{ports: [{port: 80, protocol: QUIC}]}]",
     "spec.ingress[0].toPorts[0].ports[0].protocol", "unknown protocol"),
    ("  endpointSelector: {}\n  ingress:\n  - toPorts: [{ports: [{port: true}]}]",
     "spec.ingress[0].toPorts[0].ports[0].port", "a boolean"),
    ("  endpointSelector: {}\n  ingress:\n  - toPorts: [{ports: []}]",
     "spec.ingress[0].toPorts[0].ports", "must not be empty"),
    ("  endpointSelector: {}\n  egress:\n"
     "  - toCIDRSet: [{cidr: 10.0.0.0/8, except: [11.0.0.0/16]}]",
     "spec.egress[0].toCIDRSet[0].except[0]", "not inside 10.0.0.0/8"),
    ("  endpointSelector: {}\n  egress:\n  - toCIDRSet: [{cidrGroupRef: office}]",
     "spec.egress[0].toCIDRSet[0].cidrGroupRef", "CIDR groups"),
    ("  endpointSelector: {matchExpressions: [{key: a, operator: In}]}",
     "spec.endpointSelector.matchExpressions[0].values", "must not be empty for operator In"),
    ("  endpointSelector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}",
     "spec.endpointSelector.matchExpressions[0].values", "must be empty for operator Exists"),
    ("  endpointSelector: {matchLabels: {'container:a': b}}",
     "spec.endpointSelector.matchLabels.container:a", "label source 'container'"),
    ("  endpointSelector: {matchLabels: {'a b': c}}",
     "spec.endpointSelector.matchLabels.a b", "not a valid label key"),
    ("  endpointSelector: {}\n  enableDefaultDeny: {ingress: false}",
     "spec.enableDefaultDeny", "not supported"),
])
def test_rejected_field(spec: str, field: str, words: str) -> None:
    found = problems(HEAD + "spec:\n" + spec + "\n")
    assert field in found, found
    assert words in found[field]


def test_wrong_kind() -> None:
    found = problems("apiVersion: cilium.io/v2\nkind: NetworkPolicy\nmetadata: {name: p}\n"
                     "spec: {endpointSelector: {}}\n")
    assert list(found) == ["kind"]
    assert "CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy" in found["kind"]


def test_clusterwide_policy_has_no_namespace() -> None:
    found = problems("apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\n"
                     "metadata: {name: p, namespace: x}\nspec: {endpointSelector: {}}\n")
    assert list(found) == ["metadata.namespace"]


def test_unknown_top_level_and_metadata_fields() -> None:
    found = problems(HEAD.replace("{name: p}", "{name: p, uid: 1}") + "status: {}\n"
                     "spec: {endpointSelector: {}}\n")
    assert set(found) == {"status", "metadata.uid"}


def test_malformed_yaml_reports_line_and_column() -> None:
    found = problems(HEAD + "spec:\n  endpointSelector: {\n  ingress: [}\n")
    assert list(found) == ["yaml"]
    assert found["yaml"].startswith("line 6, column ")


def test_duplicate_keys_are_rejected() -> None:
    found = problems(HEAD + "spec:\n  endpointSelector: {}\n  endpointSelector: {}\n")
    assert found == {"yaml": "line 6, column 3: duplicate key 'endpointSelector'"}


def test_yaml_aliases_are_rejected() -> None:
    found = problems(HEAD + "spec:\n  endpointSelector: &s {}\n  ingress:\n"
                            "  - fromEndpoints: [*s]\n")
    assert "aliases are not allowed" in found["yaml"]


def test_huge_file_is_rejected_before_parsing() -> None:
    text = HEAD + "spec:\n  endpointSelector: {}\n  description: " + "x" * MAX_APPLY_BYTES + "\n"
    found = problems(text)
    assert list(found) == ["file"]
    assert "limit of 1048576 bytes" in found["file"]


def test_long_lists_are_rejected() -> None:
    peers = ", ".join(f"{{matchLabels: {{n: v{i}}}}}" for i in range(MAX_LIST + 1))
    found = problems(HEAD + f"spec:\n  endpointSelector: {{}}\n  ingress:\n"
                            f"  - fromEndpoints: [{peers}]\n")
    assert "more than the limit of 1024" in found["spec.ingress[0].fromEndpoints"]


def test_deep_nesting_is_rejected() -> None:
    found = problems(HEAD + "spec: " + "[" * 200 + "]" * 200 + "\n")
    assert "nesting deeper" in found["yaml"]


def test_empty_and_non_mapping_documents() -> None:
    assert problems("") == {"file": "contains no policy document"}
    assert problems("- a\n- b\n") == {"document": "must be a mapping, not a list"}


def test_multi_document_paths_name_the_document() -> None:
    good = HEAD + "spec: {endpointSelector: {}}\n"
    bad = HEAD.replace("name: p", "name: q") + "spec: {endpointSelector: {}, ingress: 3}\n"
    found = problems(good + "---\n" + bad + "---\n" + good)
    assert found == {
        "documents[1].spec.ingress": "must be a list, not an integer",
        "documents[2].metadata.name": "policy default/p is already defined by documents[0]",
    }


def test_valid_multi_document_file() -> None:
    text = (HEAD + "spec: {endpointSelector: {}, ingress: [{}]}\n---\n"
            "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\n"
            "metadata: {name: cw}\nspecs:\n- endpointSelector: {}\n  description: all\n"
            "  egress: [{toEntities: [world]}]\n")
    first, second = parse_policies(text)
    assert first.key == PolicyKey("default", "p") and not first.clusterwide
    assert second.key == PolicyKey("", "cw") and second.clusterwide
    assert [r.ref.rule for r in second.rules] == ["specs[0].egress[0]"]


def test_namespace_defaults_and_normalized_document_round_trips() -> None:
    (policy,) = parse_policies(HEAD + "spec:\n  endpointSelector: {matchLabels: {a: b}}\n"
                                      "  ingress: [{toPorts: [{ports: [{port: '80'}]}]}]\n")
    assert policy.key == PolicyKey("default", "p")
    assert policy.document["metadata"] == {"name": "p", "namespace": "default"}
    again = parse_document(json.loads(canonical_json(policy)))
    assert again == policy
    assert canonical_json(again) == canonical_json(policy)
    assert parse_policies(to_yaml(policy)) == [policy]


def test_port_forms() -> None:
    (policy,) = parse_policies(HEAD + """spec:
  endpointSelector: {}
  ingress:
  - toPorts: [{ports: [{port: "80", protocol: tcp}, {port: 8000, endPort: 8080, protocol: UDP},
                       {protocol: SCTP}]}]
""")
    assert [str(p) for p in policy.rules[0].ports] == ["80/TCP", "8000-8080/UDP", "*/SCTP"]


def test_icmp_forms() -> None:
    """Numbers (as int or string) and Cilium's names per family; IPv4 by default; allow and
    deny; several `icmps` items add up."""
    (policy,) = parse_policies(HEAD + """spec:
  endpointSelector: {}
  ingress:
  - fromEndpoints: [{}]
    icmps:
    - fields: [{type: 8, family: IPv4}, {type: EchoReply}, {type: "11"}]
    - fields: [{type: EchoRequest, family: IPv6}, {type: Echo}]
  egressDeny:
  - icmps: [{fields: [{type: DestinationUnreachable}]}]
""")
    allow, deny = policy.rules
    assert [str(p) for p in allow.ports] == ["0/ICMP", "8/ICMP", "11/ICMP", "128/ICMPV6"]
    assert [str(p) for p in deny.ports] == ["3/ICMP"]
    assert str(deny.peers[0]) and deny.verdict.value == "deny"
    # type 0 is EchoReply only, not every ICMP type
    assert allow.port_matches(1, 0) and not allow.port_matches(1, 3)
    assert not allow.port_matches(6, 8)


@pytest.mark.parametrize(("icmps", "field", "words"), [
    ("[{fields: [{type: 256}]}]", "icmps[0].fields[0].type", "must be 0-255"),
    ("[{fields: [{type: -1}]}]", "icmps[0].fields[0].type", "must be 0-255"),
    ("[{fields: [{type: Bogus}]}]", "icmps[0].fields[0].type", "unknown IPv4 ICMP type 'Bogus'"),
    ("[{fields: [{type: PacketTooBig}]}]", "icmps[0].fields[0].type",
     "unknown IPv4 ICMP type 'PacketTooBig'"),
    ("[{fields: [{type: Photuris, family: IPv6}]}]", "icmps[0].fields[0].type",
     "unknown IPv6 ICMP type 'Photuris'"),
    ("[{fields: [{type: true}]}]", "icmps[0].fields[0].type", "not a boolean"),
    ("[{fields: [{type: [8]}]}]", "icmps[0].fields[0].type", "not a list"),
    ("[{fields: [{family: IPv4}]}]", "icmps[0].fields[0].type", "is required"),
    ("[{fields: [{type: 8, family: IPv5}]}]", "icmps[0].fields[0].family",
     "must be IPv4 or IPv6, not 'IPv5'"),
    ("[{fields: [{type: 8, family: 4}]}]", "icmps[0].fields[0].family",
     "must be a string, not an integer"),
    ("[{fields: [{type: 8, code: 0}]}]", "icmps[0].fields[0].code", "unknown field"),
    ("[{fields: [8]}]", "icmps[0].fields[0]", "must be a mapping, not an integer"),
    ("[{fields: []}]", "icmps[0].fields", "must not be empty"),
    ("[{fields: {type: 8}}]", "icmps[0].fields", "must be a list, not a mapping"),
    ("[{}]", "icmps[0].fields", "is required"),
    ("[{fields: [{type: 8}], types: [8]}]", "icmps[0].types", "unknown field"),
    ("{fields: [{type: 8}]}", "icmps", "must be a list, not a mapping"),
    ("[{fields: [" + ", ".join(["{type: 8}"] * 41) + "]}]", "icmps[0].fields",
     "more than the limit of 40"),
])
@pytest.mark.parametrize("section", ["ingress", "ingressDeny", "egress", "egressDeny"])
def test_icmp_rejected(section: str, icmps: str, field: str, words: str) -> None:
    found = problems(HEAD + f"spec:\n  endpointSelector: {{}}\n  {section}:\n"
                            f"  - icmps: {icmps}\n")
    path = f"spec.{section}[0].{field}"
    assert list(found) == [path], found
    assert words in found[path]


@pytest.mark.parametrize("section", ["ingress", "ingressDeny", "egress", "egressDeny"])
def test_icmp_with_to_ports_is_refused_as_in_cilium(section: str) -> None:
    found = problems(HEAD + f"spec:\n  endpointSelector: {{}}\n  {section}:\n"
                            "  - icmps: [{fields: [{type: 8}]}]\n"
                            "    toPorts: [{ports: [{port: '80', protocol: TCP}]}]\n")
    assert list(found) == [f"spec.{section}[0].icmps"]
    assert "toPorts" in found[f"spec.{section}[0].icmps"]


@pytest.mark.parametrize("text", ["0", "[a]", "just a string", "{1: a}", "? [a]\n: b\n"])
def test_document_itself_is_named(text: str) -> None:
    """Found by tests/fuzz: a lone document that is not a mapping (or has a key that is not a
    string at its top) was reported on an empty field name."""
    found = problems(text)
    assert "document" in found and "" not in found
