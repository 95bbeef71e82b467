"""CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy YAML -> validated `Policy` objects.

Validation collects every problem of every document before failing, each with a path
(`specs[1].ingress[0].toPorts[0].ports[0].port: must be 1-65535`), so an operator fixes a file
in one round. Fields Cilium knows but Bulkhead does not implement are rejected by name, never
ignored: a policy that silently lost its L7 or FQDN part would allow more than it says.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

from bulkhead import fqdnmatch
from bulkhead.errors import FieldViolation, shown
from bulkhead.httprules import HeaderMatch, HttpRule, InvalidHttpRule, Mismatch, validate
from bulkhead.labelkey import is_key as is_label_key
from bulkhead.portname import RULE as PORT_NAME_RULE
from bulkhead.portname import is_port_name
from bulkhead.reserved import RESERVED
from controlplane import yamldocs
from controlplane.identity.labels import NAMESPACE_LABEL
from controlplane.policy.labels import IPNetwork
from controlplane.policy.model import (
    ALL_PORTS,
    Direction,
    DnsPorts,
    HttpPorts,
    Policy,
    PolicyKey,
    PortRange,
    Protocol,
    Rule,
    RuleRef,
    ServiceRef,
    Verdict,
)
from controlplane.policy.selector import (
    ENTITIES,
    CidrSelector,
    EntitySelector,
    FqdnSelector,
    LabelSelector,
    NodeSelector,
    Operator,
    Requirement,
    Selector,
    parse_network,
)
from controlplane.yamldocs import (  # noqa: F401 (re-exported)
    MAX_APPLY_BYTES,
    MAX_DEPTH,
    MAX_DOCUMENTS,
    ComplexKey,
    DocumentsError,
)

API_VERSION = "cilium.io/v2"
NAMESPACED_KIND = "CiliumNetworkPolicy"
CLUSTERWIDE_KIND = "CiliumClusterwideNetworkPolicy"
DEFAULT_NAMESPACE = "default"

MAX_LIST = 1024
"""Upper bound of every list and label map in a policy."""


MAX_ICMP_FIELDS = 40
"""Cilium's limit of `fields` in one `icmps` item."""

ICMP_TYPES: dict[str, dict[str, int]] = {
    "IPv4": {
        "EchoReply": 0, "DestinationUnreachable": 3, "Redirect": 5, "Echo": 8, "EchoRequest": 8,
        "RouterAdvertisement": 9, "RouterSelection": 10, "TimeExceeded": 11,
        "ParameterProblem": 12, "Timestamp": 13, "TimestampReply": 14, "Photuris": 40,
        "ExtendedEchoRequest": 42, "ExtendedEchoReply": 43,
    },
    "IPv6": {
        "DestinationUnreachable": 1, "PacketTooBig": 2, "TimeExceeded": 3,
        "ParameterProblem": 4, "EchoRequest": 128, "EchoReply": 129,
        "MulticastListenerQuery": 130, "MulticastListenerReport": 131,
        "MulticastListenerDone": 132, "RouterSolicitation": 133, "RouterAdvertisement": 134,
        "NeighborSolicitation": 135, "NeighborAdvertisement": 136, "RedirectMessage": 137,
        "RouterRenumbering": 138, "ICMPNodeInformationQuery": 139,
        "ICMPNodeInformationResponse": 140, "InverseNeighborDiscoverySolicitation": 141,
        "InverseNeighborDiscoveryAdvertisement": 142, "HomeAgentAddressDiscoveryRequest": 144,
        "HomeAgentAddressDiscoveryReply": 145, "MobilePrefixSolicitation": 146,
        "MobilePrefixAdvertisement": 147, "DuplicateAddressRequestCodeSuffix": 157,
        "DuplicateAddressConfirmationCodeSuffix": 158, "ExtendedEchoRequest": 160,
        "ExtendedEchoReply": 161,
    },
}
"""Cilium's ICMP type names per family (pkg/policy/api/icmp.go); numbers 0-255 work too."""
_ICMP_FAMILY_PROTOCOL = {"IPv4": Protocol.ICMP, "IPv6": Protocol.ICMPV6}


@dataclass(frozen=True)
class _Dns:
    """The parsed `rules.dns` of one `toPorts` item (canonical patterns)."""

    patterns: tuple[str, ...]


class PolicyValidationError(DocumentsError):
    """Every problem found in a policy file; `violations` name the field of each."""


_UNSUPPORTED_FIELDS: dict[str, str] = {
    "toFQDNs": "only egress allow rules can have toFQDNs (as in Cilium: no FQDN deny)",
    "fromGroups": "cloud provider groups are not supported",
    "toGroups": "cloud provider groups are not supported",
    "authentication": "mutual authentication is not supported",
    "enableDefaultDeny": "enableDefaultDeny is not supported",
    "labels": "rule labels are not supported",
    "kafka": "Kafka rules are not supported (HTTP only)",
    "dns": "DNS rules are only allowed in egress allow rules (as in Cilium)",
    "l7proto": "generic L7 protocol rules are not supported (HTTP only)",
    "l7": "generic L7 protocol rules are not supported (HTTP only)",
    "secret": "secrets are not supported (there is no secret store; give the value)",
    "serverNames": "TLS SNI rules are not supported",
    "listener": "Envoy listeners are not supported",
    "originatingTLS": "TLS interception is not supported",
    "terminatingTLS": "TLS interception is not supported",
    "cidrGroupRef": "CIDR groups are not supported",
    "cidrGroupSelector": "CIDR groups are not supported",
}

_PORT_PROTOCOLS = {p.name: p for p in (Protocol.ANY, Protocol.TCP, Protocol.UDP, Protocol.SCTP)}

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_LABEL_NAME = re.compile(_NAME)
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SELECTOR_SOURCES = {"k8s", "any", "reserved"}


def _field(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def load_documents(text: str | bytes) -> list[Any]:
    """The YAML documents of `text` (controlplane/yamldocs.py: the one safe loader of every
    apply); raises PolicyValidationError on size or syntax."""
    try:
        return yamldocs.load_documents(text, "policy")
    except DocumentsError as exc:
        raise PolicyValidationError(exc.violations) from None


def parse_policies(text: str | bytes) -> list[Policy]:
    """Every policy of a (multi-document) YAML file, or PolicyValidationError with every
    problem. Paths are relative to the document, prefixed `documents[i].` when there are
    several."""
    docs = load_documents(text)
    violations: list[FieldViolation] = []
    policies: list[Policy] = []
    first_seen: dict[PolicyKey, int] = {}
    for i, doc in enumerate(docs):
        prefix = f"documents[{i}]" if len(docs) > 1 else ""
        parser = _DocumentParser(prefix)
        policy = parser.document(doc)
        violations.extend(parser.violations)
        if policy is None:
            continue
        if policy.key in first_seen:
            violations.append(FieldViolation(
                _field(prefix, "metadata.name"),
                f"policy {policy.key} is already defined by documents[{first_seen[policy.key]}]"))
            continue
        first_seen[policy.key] = i
        policies.append(policy)
    if violations:
        raise PolicyValidationError(violations)
    return policies


def parse_document(doc: Any) -> Policy:
    """One already-loaded document (e.g. read back from the store)."""
    parser = _DocumentParser("")
    policy = parser.document(doc)
    if parser.violations or policy is None:
        raise PolicyValidationError(parser.violations)
    return policy


def canonical_json(policy: Policy) -> str:
    """Stable serialization of the normalized document: equal content, equal bytes."""
    return json.dumps(policy.document, sort_keys=True, separators=(",", ":"))


def to_yaml(policy: Policy) -> str:
    return yaml.safe_dump(dict(policy.document), sort_keys=False, default_flow_style=False)


class _DocumentParser:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.violations: list[FieldViolation] = []

    # -- helpers -------------------------------------------------------------------------
    def fail(self, path: str, description: str) -> None:
        # The document itself (a lone document that is no mapping, a key that is not a
        # string at its top) is named "document", as the service parser names it.
        self.violations.append(FieldViolation(_field(self.prefix, path) or "document",
                                              description))

    def mapping(self, value: Any, path: str, allowed: set[str]) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping, not {_type_name(value)}")
            return None
        ok = True
        for key in value:
            if not isinstance(key, str):
                self.fail(path, f"keys must be strings, not {_type_name(key)} ({shown(key)})")
                ok = False
            elif key not in allowed:
                why = _UNSUPPORTED_FIELDS.get(key, "unknown field")
                self.fail(_field(path, key), why)
                ok = False
        return value if ok else None

    def sequence(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            self.fail(path, f"must be a list, not {_type_name(value)}")
            return []
        if len(value) > MAX_LIST:
            self.fail(path, f"has {len(value)} items, more than the limit of {MAX_LIST}")
            return []
        return value

    def string(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str):
            self.fail(path, f"must be a string, not {_type_name(value)}")
            return None
        return value

    # -- document ------------------------------------------------------------------------
    def document(self, doc: Any) -> Policy | None:
        body = self.mapping(doc, "", {"apiVersion", "kind", "metadata", "spec", "specs"})
        if body is None:
            if not isinstance(doc, dict):
                return None
            body = {k: v for k, v in doc.items()
                    if k in {"apiVersion", "kind", "metadata", "spec", "specs"}}
        api_version = body.get("apiVersion")
        if api_version is None:
            self.fail("apiVersion", f"is required (must be {API_VERSION})")
        elif api_version != API_VERSION:
            self.fail("apiVersion", f"must be {API_VERSION}, not {shown(api_version)}")
        kind = body.get("kind")
        if kind is None:
            self.fail("kind", f"is required ({NAMESPACED_KIND} or {CLUSTERWIDE_KIND})")
            return None
        if kind not in (NAMESPACED_KIND, CLUSTERWIDE_KIND):
            self.fail("kind", f"must be {NAMESPACED_KIND} or {CLUSTERWIDE_KIND}, not {shown(kind)}")
            return None
        key, metadata = self.metadata(body.get("metadata"), kind == CLUSTERWIDE_KIND)
        namespace = key.namespace if key else ""
        rules: list[Rule] = []
        specs: list[tuple[str, Any]] = []
        if "spec" in body:
            specs.append(("spec", body["spec"]))
        if "specs" in body:
            items = self.sequence(body["specs"], "specs")
            if "specs" in body and isinstance(body["specs"], list) and not body["specs"]:
                self.fail("specs", "must not be empty")
            specs.extend((f"specs[{i}]", spec) for i, spec in enumerate(items))
        if not specs and "specs" not in body:
            self.fail("spec", "is required (spec or specs)")
        policy_key = key or PolicyKey(namespace, "")
        for path, spec in specs:
            rules.extend(self.spec(spec, path, policy_key))
        if self.violations or key is None:
            return None
        document: dict[str, Any] = {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata}
        for name in ("spec", "specs"):
            if name in body:
                document[name] = body[name]
        return Policy(key, kind, tuple(rules), document)

    def metadata(self, value: Any, clusterwide: bool) -> tuple[PolicyKey | None, dict[str, Any]]:
        if value is None:
            self.fail("metadata.name", "is required")
            return None, {}
        meta = self.mapping(value, "metadata", {"name", "namespace", "labels", "annotations"})
        if meta is None:
            return None, {}
        name = meta.get("name")
        if name is None:
            self.fail("metadata.name", "is required")
        elif (name := self.string(name, "metadata.name")) is not None and (
            len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name)
        ):
            self.fail("metadata.name", f"{shown(name)} is not a valid name (lower-case DNS "
                                       "subdomain, at most 253 characters)")
            name = None
        namespace = ""
        if clusterwide:
            if "namespace" in meta:
                self.fail("metadata.namespace", f"{CLUSTERWIDE_KIND} has no namespace")
        else:
            ns = meta.get("namespace", DEFAULT_NAMESPACE)
            ns_str = self.string(ns, "metadata.namespace")
            if ns_str is not None and (len(ns_str) > 63 or not _DNS_LABEL.fullmatch(ns_str)):
                self.fail("metadata.namespace", f"{shown(ns_str)} is not a valid namespace name")
                ns_str = None
            namespace = ns_str or ""
        for extra in ("labels", "annotations"):
            if extra in meta:
                self.string_map(meta[extra], f"metadata.{extra}")
        normalized = dict(meta)
        if not clusterwide and namespace:
            normalized["namespace"] = namespace
        if not isinstance(name, str) or (not clusterwide and not namespace):
            return None, normalized
        return PolicyKey(namespace, name), normalized

    def string_map(self, value: Any, path: str) -> dict[str, str]:
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping, not {_type_name(value)}")
            return {}
        if len(value) > MAX_LIST:
            self.fail(path, f"has {len(value)} entries, more than the limit of {MAX_LIST}")
            return {}
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                self.fail(path, f"keys must be strings, not {_type_name(k)} ({shown(k)})")
            elif not isinstance(v, str):
                self.fail(_field(path, k), f"must be a string, not {_type_name(v)}")
            else:
                out[k] = v
        return out

    # -- spec and rules ------------------------------------------------------------------
    def spec(self, value: Any, path: str, key: PolicyKey) -> list[Rule]:
        spec = self.mapping(value, path, {"endpointSelector", "nodeSelector", "ingress",
                                          "egress", "ingressDeny", "egressDeny", "description"})
        if spec is None:
            return []
        if "description" in spec:
            self.string(spec["description"], _field(path, "description"))
        subject: LabelSelector | None = None
        host = "nodeSelector" in spec
        if host:
            subject = self.host_subject(spec, path, key)
        elif "endpointSelector" not in spec:
            self.fail(_field(path, "endpointSelector"), "is required")
        else:
            subject = self.selector(spec["endpointSelector"], _field(path, "endpointSelector"))
        if subject is None:
            subject = LabelSelector()  # keep validating the rules; nothing is returned anyway
        if key.namespace and not host:
            subject = subject.with_requirement(_namespace_requirement(key.namespace))
        rules: list[Rule] = []
        for section, direction, verdict in (
            ("ingress", Direction.INGRESS, Verdict.ALLOW),
            ("ingressDeny", Direction.INGRESS, Verdict.DENY),
            ("egress", Direction.EGRESS, Verdict.ALLOW),
            ("egressDeny", Direction.EGRESS, Verdict.DENY),
        ):
            if section not in spec:
                continue
            section_path = _field(path, section)
            for i, item in enumerate(self.sequence(spec[section], section_path)):
                rule_path = f"{section_path}[{i}]"
                rule = self.rule(item, rule_path, direction, verdict, key, host)
                if rule is not None:
                    rules.append(Rule(RuleRef(key, rule_path), direction, verdict, subject,
                                      *rule, host=host))
        return rules

    def host_subject(self, spec: dict[str, Any], path: str, key: PolicyKey
                     ) -> LabelSelector | None:
        """`nodeSelector`: a host policy, Cilium's: only clusterwide, never together with an
        endpointSelector; it selects nodes by their labels (`bulkhead node label`)."""
        node_path = _field(path, "nodeSelector")
        if key.namespace:
            self.fail(node_path, f"host policies (nodeSelector) must be a {CLUSTERWIDE_KIND} "
                                 "(as in Cilium)")
        if "endpointSelector" in spec:
            self.fail(_field(path, "endpointSelector"), "cannot be used together with "
                                                        "nodeSelector; give exactly one")
        return self.selector(spec["nodeSelector"], node_path)

    def node_peers(self, rule: dict[str, Any], path: str, name: str) -> list[Selector]:
        """`fromNodes`/`toNodes`: selectors over node labels."""
        peers: list[Selector] = []
        nodes_path = _field(path, name)
        for i, item in enumerate(self.sequence(rule.get(name, []), nodes_path)):
            selector = self.selector(item, f"{nodes_path}[{i}]")
            if selector is not None:
                peers.append(NodeSelector(selector))
        return peers

    def rule(self, value: Any, path: str, direction: Direction, verdict: Verdict,
             key: PolicyKey, host: bool = False
             ) -> tuple[tuple[Selector, ...], tuple[PortRange, ...], tuple[HttpPorts, ...],
                        tuple[ServiceRef, ...], tuple[LabelSelector, ...], int,
                        tuple[DnsPorts, ...]] | None:
        side = "from" if direction is Direction.INGRESS else "to"
        endpoints, entities, cidr, cidr_set = (f"{side}Endpoints", f"{side}Entities",
                                               f"{side}CIDR", f"{side}CIDRSet")
        requires_field = f"{side}Requires"
        nodes_field = f"{side}Nodes"
        fields = {endpoints, entities, cidr, cidr_set, "toPorts", "icmps", requires_field}
        if direction is Direction.EGRESS:
            fields.add("toServices")
            if verdict is Verdict.ALLOW:
                fields.add("toFQDNs")
        if host:
            fields.add(nodes_field)
        elif isinstance(value, dict) and nodes_field in value:
            self.fail(_field(path, nodes_field), "is supported only in host policies "
                                                 "(nodeSelector) so far")
            return None
        rule = self.mapping(value, path, fields)
        if rule is None:
            return None
        if host and not self.host_rule_fields(rule, path, side):
            return None
        if rule.get("icmps") and rule.get("toPorts"):
            self.fail(_field(path, "icmps"), "cannot be used together with toPorts in one rule "
                                             "(as in Cilium); define a separate rule for toPorts")
        peers: list[Selector] = []
        before = len(self.violations)
        for i, item in enumerate(self.sequence(rule.get(endpoints, []), _field(path, endpoints))):
            selector = self.selector(item, f"{_field(path, endpoints)}[{i}]")
            if selector is None:
                continue
            # As Cilium: a peer naming a namespace or a reserved label keeps its scope.
            if key.namespace and not (selector.names_namespace() or selector.names_reserved()):
                selector = selector.with_requirement(_namespace_requirement(key.namespace))
            peers.append(selector)
        endpoint_peers = len(dict.fromkeys(peers))
        requires: list[LabelSelector] = []
        requires_path = _field(path, requires_field)
        for i, item in enumerate(self.sequence(rule.get(requires_field, []), requires_path)):
            selector = self.selector(item, f"{requires_path}[{i}]")
            if selector is None:
                continue
            # As Cilium: scoped to the policy's namespace like an endpoint selector.
            if key.namespace and not (selector.names_namespace() or selector.names_reserved()):
                selector = selector.with_requirement(_namespace_requirement(key.namespace))
            if not selector.is_wildcard:
                requires.append(selector)
        for i, item in enumerate(self.sequence(rule.get(entities, []), _field(path, entities))):
            entity_path = f"{_field(path, entities)}[{i}]"
            name = self.string(item, entity_path)
            if name is not None:
                if name in ENTITIES:
                    peers.append(EntitySelector(name))
                else:
                    self.fail(entity_path, f"unknown entity {shown(name)}; one of "
                                           f"{', '.join(sorted(ENTITIES))}")
        peers.extend(self.node_peers(rule, path, nodes_field))
        for i, item in enumerate(self.sequence(rule.get(cidr, []), _field(path, cidr))):
            network = self.network(item, f"{_field(path, cidr)}[{i}]")
            if network is not None:
                peers.append(CidrSelector(network))
        for i, item in enumerate(self.sequence(rule.get(cidr_set, []), _field(path, cidr_set))):
            selector_ = self.cidr_set(item, f"{_field(path, cidr_set)}[{i}]")
            if selector_ is not None:
                peers.append(selector_)
        fqdns = self.fqdn_peers(rule, path)
        ports: list[PortRange] = []
        l7: list[HttpPorts] = []
        dns: list[DnsPorts] = []
        for i, item in enumerate(self.sequence(rule.get("toPorts", []), _field(path, "toPorts"))):
            found, http = self.port_rule(item, f"{_field(path, 'toPorts')}[{i}]", verdict,
                                         direction)
            if isinstance(http, _Dns):
                ports.extend(found)
                dns.append(DnsPorts(f"toPorts[{i}]", tuple(sorted(set(found))), http.patterns))
            elif http is None:
                ports.extend(found)
            else:
                l7.append(HttpPorts(f"toPorts[{i}]", tuple(sorted(set(found))), http))
        for i, item in enumerate(self.sequence(rule.get("icmps", []), _field(path, "icmps"))):
            ports.extend(self.icmp_rule(item, f"{_field(path, 'icmps')}[{i}]"))
        services: list[ServiceRef] = []
        services_path = _field(path, "toServices")
        for i, item in enumerate(self.sequence(rule.get("toServices", []), services_path)):
            service = self.service_ref(item, f"{services_path}[{i}]")
            if service is not None:
                services.append(service)
        if host and any(p.name for p in ports):
            self.fail(_field(path, "toPorts"), "named ports are not supported in host policies "
                                               "(a node declares no named ports); give numbers")
        if len(self.violations) > before:
            return None
        if fqdns and (peers or services):
            self.fail(_field(path, "toFQDNs"), "cannot be combined with other peers "
                      "(toEndpoints, toEntities, toCIDR, toCIDRSet, toServices) in one rule, "
                      "as in Cilium; define a separate rule")
            return None
        peers.extend(fqdns)
        if not peers and not services and (ports or l7):
            peers.append(EntitySelector("all"))
        if (peers or services) and not ports and not l7:
            ports.append(ALL_PORTS)
        return (tuple(dict.fromkeys(peers)), tuple(sorted(set(ports))), tuple(l7),
                tuple(dict.fromkeys(services)), tuple(dict.fromkeys(requires)), endpoint_peers,
                tuple(dns))

    def fqdn_peers(self, rule: dict[str, Any], path: str) -> list[Selector]:
        """`toFQDNs`: one selector per item (matchName or matchPattern)."""
        found: list[Selector] = []
        fqdn_path = _field(path, "toFQDNs")
        for i, item in enumerate(self.sequence(rule.get("toFQDNs", []), fqdn_path)):
            pattern = self.fqdn_selector(item, f"{fqdn_path}[{i}]")
            if pattern is not None:
                found.append(FqdnSelector(pattern))
        return found

    def fqdn_selector(self, value: Any, path: str) -> str | None:
        """One FQDNSelector (toFQDNs, rules.dns): exactly one of matchName, matchPattern; the
        canonical pattern (bulkhead.fqdnmatch)."""
        item = self.mapping(value, path, {"matchName", "matchPattern"})
        if item is None:
            return None
        if len(item) != 1:
            self.fail(path, "must set exactly one of matchName, matchPattern")
            return None
        (name, raw), = item.items()
        text = self.string(raw, _field(path, name))
        if text is None:
            return None
        check = fqdnmatch.name_problem if name == "matchName" else fqdnmatch.pattern_problem
        problem = check(text)
        if problem is not None:
            self.fail(_field(path, name), f"{shown(text)} {problem}")
            return None
        return fqdnmatch.canonical(text)

    def host_rule_fields(self, rule: dict[str, Any], path: str, side: str) -> bool:
        """What a host policy's rule may not have (Cilium refuses L7 rules on the host; node
        peers are not combined with other peer kinds in one rule, as Cilium's sanitizer says;
        services and requirements are not resolved for hosts here)."""
        ok = True
        for name in (f"{side}Requires", "toServices"):
            if name in rule:
                self.fail(_field(path, name), "is not supported in host policies (nodeSelector)")
                ok = False
        for i, item in enumerate(rule.get("toPorts", []) if isinstance(rule.get("toPorts"),
                                                                       list) else []):
            if isinstance(item, dict) and "rules" in item:
                self.fail(f"{_field(path, 'toPorts')}[{i}].rules",
                          "L7 rules are not supported in host policies (as in Cilium)")
                ok = False
        l3 = [name for name in (f"{side}Endpoints", f"{side}Entities", f"{side}CIDR",
                                f"{side}CIDRSet") if name in rule]
        if f"{side}Nodes" in rule and l3:
            self.fail(_field(path, f"{side}Nodes"), f"cannot be combined with {l3[0]} in one "
                                                    "rule (as in Cilium); write two rules")
            ok = False
        return ok

    def service_ref(self, value: Any, path: str) -> ServiceRef | None:
        """One `toServices` item: `k8sService` {serviceName, namespace} or
        `k8sServiceSelector` {selector, namespace}; a namespace left out matches every
        namespace (Cilium's meaning)."""
        item = self.mapping(value, path, {"k8sService", "k8sServiceSelector"})
        if item is None:
            return None
        if len(item) != 1:
            self.fail(path, "must have exactly one of k8sService or k8sServiceSelector")
            return None
        ref = path.rpartition(".")[2]
        if "k8sService" in item:
            sub_path = _field(path, "k8sService")
            sub = self.mapping(item["k8sService"], sub_path, {"serviceName", "namespace"})
            if sub is None:
                return None
            namespace = self.service_namespace(sub, sub_path)
            name = None
            if "serviceName" not in sub:
                self.fail(_field(sub_path, "serviceName"), "is required")
            elif (name := self.string(sub["serviceName"], _field(sub_path, "serviceName"))
                  ) is not None and (len(name) > 63 or not _DNS_LABEL.fullmatch(name)):
                self.fail(_field(sub_path, "serviceName"),
                          f"{shown(name)} is not a valid service name")
                name = None
            if name is None or namespace is None:
                return None
            return ServiceRef(ref, namespace, name)
        sub_path = _field(path, "k8sServiceSelector")
        sub = self.mapping(item["k8sServiceSelector"], sub_path, {"selector", "namespace"})
        if sub is None:
            return None
        namespace = self.service_namespace(sub, sub_path)
        if "selector" not in sub:
            self.fail(_field(sub_path, "selector"), "is required")
            return None
        selector = self.selector(sub["selector"], _field(sub_path, "selector"))
        if selector is None or namespace is None:
            return None
        return ServiceRef(ref, namespace, selector=selector)

    def service_namespace(self, item: dict[str, Any], path: str) -> str | None:
        if "namespace" not in item:
            return ""
        ns = self.string(item["namespace"], _field(path, "namespace"))
        if ns is not None and (len(ns) > 63 or not _DNS_LABEL.fullmatch(ns)):
            self.fail(_field(path, "namespace"), f"{shown(ns)} is not a valid namespace name")
            return None
        return ns

    def selector(self, value: Any, path: str) -> LabelSelector | None:
        if value is None:
            return LabelSelector()
        sel = self.mapping(value, path, {"matchLabels", "matchExpressions"})
        if sel is None:
            return None
        before = len(self.violations)
        requirements: list[Requirement] = []
        if "matchLabels" in sel:
            labels_path = _field(path, "matchLabels")
            for raw_key, raw_value in self.string_map(sel["matchLabels"], labels_path).items():
                parsed = self.label_key(raw_key, _field(labels_path, raw_key))
                if parsed and self.label_value(raw_value, _field(labels_path, raw_key)):
                    requirements.append(
                        Requirement(parsed[1], Operator.IN, (raw_value,), parsed[0]))
        if "matchExpressions" in sel:
            exprs_path = _field(path, "matchExpressions")
            for i, expr in enumerate(self.sequence(sel["matchExpressions"], exprs_path)):
                requirement = self.expression(expr, f"{exprs_path}[{i}]")
                if requirement is not None:
                    requirements.append(requirement)
        if len(self.violations) > before:
            return None
        return LabelSelector(tuple(sorted(set(requirements))))

    def expression(self, value: Any, path: str) -> Requirement | None:
        expr = self.mapping(value, path, {"key", "operator", "values"})
        if expr is None:
            return None
        before = len(self.violations)
        parsed = None
        if "key" not in expr:
            self.fail(_field(path, "key"), "is required")
        elif (key := self.string(expr["key"], _field(path, "key"))) is not None:
            parsed = self.label_key(key, _field(path, "key"))
        operator = None
        if "operator" not in expr:
            self.fail(_field(path, "operator"), "is required (In, NotIn, Exists, DoesNotExist)")
        elif (op := self.string(expr["operator"], _field(path, "operator"))) is not None:
            operator = {o.value.lower(): o for o in Operator}.get(op.lower())
            if operator is None:
                self.fail(_field(path, "operator"),
                          f"unknown operator {shown(op)}; one of In, NotIn, Exists, DoesNotExist")
        values: list[str] = []
        values_path = _field(path, "values")
        for i, v in enumerate(self.sequence(expr.get("values", []), values_path)):
            if (text := self.string(v, f"{values_path}[{i}]")) is not None:
                if self.label_value(text, f"{values_path}[{i}]"):
                    values.append(text)
        if operator in (Operator.IN, Operator.NOT_IN) and not expr.get("values"):
            self.fail(values_path, f"must not be empty for operator {operator.value}")
        if operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and expr.get("values"):
            self.fail(values_path, f"must be empty for operator {operator.value}")
        if len(self.violations) > before or parsed is None or operator is None:
            return None
        return Requirement(parsed[1], operator, tuple(sorted(set(values))), parsed[0])

    def label_key(self, key: str, path: str) -> tuple[str, str] | None:
        """(source or "" for any, key) of a selector label key."""
        source, sep, name = key.partition(":")
        if not sep:
            source, name = "", key
        elif source not in _SELECTOR_SOURCES:
            self.fail(path, f"label source {shown(source)} is not supported "
                            "(k8s, any, reserved or none)")
            return None
        if source == "any":
            source = ""
        if source == "reserved":
            if name not in RESERVED:
                self.fail(path, f"unknown reserved label {shown(name)}")
                return None
            return source, name
        if not is_label_key(name):
            self.fail(path, f"{shown(key)} is not a valid label key")
            return None
        return source, name

    def label_value(self, value: str, path: str) -> bool:
        if value and (len(value) > 63 or not _LABEL_NAME.fullmatch(value)):
            self.fail(path, f"{shown(value)} is not a valid label value (at most 63 characters: "
                            "letters, digits, '-', '_', '.')")
            return False
        return True

    def network(self, value: Any, path: str) -> IPNetwork | None:
        text = self.string(value, path)
        if text is None:
            return None
        try:
            return parse_network(text)
        except ValueError:
            self.fail(path, f"{shown(text)} is not an IP address or prefix")
            return None

    def cidr_set(self, value: Any, path: str) -> CidrSelector | None:
        item = self.mapping(value, path, {"cidr", "except"})
        if item is None:
            return None
        if "cidr" not in item:
            self.fail(_field(path, "cidr"), "is required")
            return None
        network = self.network(item["cidr"], _field(path, "cidr"))
        excepts = []
        except_path = _field(path, "except")
        for i, raw in enumerate(self.sequence(item.get("except", []), except_path)):
            excluded = self.network(raw, f"{except_path}[{i}]")
            if excluded is None or network is None:
                continue
            if excluded.version != network.version or not excluded.subnet_of(network):  # type: ignore[arg-type]
                self.fail(f"{except_path}[{i}]", f"{excluded} is not inside {network}")
                continue
            excepts.append(excluded)
        if network is None:
            return None
        return CidrSelector(network, tuple(sorted(set(excepts), key=_network_order)))

    def port_rule(self, value: Any, path: str, verdict: Verdict,
                  direction: Direction = Direction.INGRESS,
                  ) -> tuple[list[PortRange], tuple[HttpRule, ...] | _Dns | None]:
        """The ports of one `toPorts` item and its HTTP or DNS rules (None: a plain L4
        item)."""
        allowed = {"ports", "rules"} if verdict is Verdict.ALLOW else {"ports"}
        if verdict is Verdict.DENY and isinstance(value, dict) and "rules" in value:
            self.fail(_field(path, "rules"), "deny rules cannot carry L7 rules (as in Cilium; "
                                             "an L3/L4 deny already wins before any proxy)")
            value = {k: v for k, v in value.items() if k != "rules"}
        item = self.mapping(value, path, allowed)
        if item is None:
            return [], None
        http = (self.l7_rules(item["rules"], _field(path, "rules"),
                              dns=direction is Direction.EGRESS)
                if "rules" in item else None)
        if "ports" not in item:
            self.fail(_field(path, "ports"), "is required")
            return [], http
        ports_path = _field(path, "ports")
        items = self.sequence(item["ports"], ports_path)
        if isinstance(item["ports"], list) and not item["ports"]:
            self.fail(ports_path, "must not be empty")
        found = []
        for i, raw in enumerate(items):
            port = self.port(raw, f"{ports_path}[{i}]")
            if port is None:
                continue
            found.append(port)
            if isinstance(http, _Dns):
                # Cilium: DNS rules need a port (the proxy listens for that port's traffic).
                if port.port_lo == 0 and not port.name:
                    self.fail(_field(f"{ports_path}[{i}]", "port"),
                              "is required with DNS rules")
                continue
            if http is None:
                continue
            # Cilium's PortRule sanitize: L7 rules other than DNS need TCP and a port.
            if port.protocol != Protocol.TCP:
                self.fail(_field(f"{ports_path}[{i}]", "protocol"),
                          f"L7 rules can only apply to TCP (not {Protocol(port.protocol).name})")
            if port.port_lo == 0 and not port.name:
                self.fail(_field(f"{ports_path}[{i}]", "port"), "is required with L7 rules")
        return found, http

    def l7_rules(self, value: Any, path: str, dns: bool = False
                 ) -> tuple[HttpRule, ...] | _Dns | None:
        """`rules`: `http`, or (egress, `dns`) `dns` (Cilium's other L7 kinds are refused by
        name); `rules: {}` is no L7 rule at all, as in Cilium."""
        rules = self.mapping(value, path, {"http", "dns"} if dns else {"http"})
        if rules is None:
            if not isinstance(value, dict) or "http" not in value:
                return None
            rules = value  # the refused kinds are reported; keep checking `http`
        if "dns" in rules and dns:
            if "http" in rules:
                self.fail(path, "can hold one kind of L7 rule (http or dns), not both")
                return None
            return self.dns_rules(rules["dns"], _field(path, "dns"))
        if "http" not in rules:
            return None
        http_path = _field(path, "http")
        raw = rules["http"]
        items = self.sequence(raw, http_path)
        if isinstance(raw, list) and not raw:
            self.fail(http_path, "must not be empty (http: [{}] allows every request)")
            return None
        before = len(self.violations)
        http = []
        for i, item in enumerate(items):
            rule = self.http_rule(item, f"{http_path}[{i}]")
            if rule is None:
                continue
            try:
                validate((rule,))
            except InvalidHttpRule as exc:  # field "[0].path": put it in its place
                self.fail(f"{http_path}[{i}]{exc.field.removeprefix('[0]')}", exc.message)
                continue
            http.append(rule)
        if len(self.violations) > before:
            return None
        return tuple(http)

    def dns_rules(self, value: Any, path: str) -> _Dns | None:
        """`rules.dns`: name patterns the DNS proxy answers (`[]` is refused: it would
        refuse every query, which Cilium spells differently)."""
        items = self.sequence(value, path)
        if isinstance(value, list) and not value:
            self.fail(path, "must not be empty (matchPattern: \"*\" allows every query)")
            return None
        before = len(self.violations)
        patterns = [self.fqdn_selector(item, f"{path}[{i}]") for i, item in enumerate(items)]
        if len(self.violations) > before:
            return None
        return _Dns(tuple(sorted({p for p in patterns if p is not None})))

    def http_rule(self, value: Any, path: str) -> HttpRule | None:
        item = self.mapping(value, path, {"method", "path", "host", "headers", "headerMatches"})
        if item is None:
            return None
        before = len(self.violations)
        fields = {name: self.string(item[name], _field(path, name)) or ""
                  for name in ("method", "path", "host") if name in item}
        headers = []
        headers_path = _field(path, "headers")
        for i, raw in enumerate(self.sequence(item.get("headers", []), headers_path)):
            if (text := self.string(raw, f"{headers_path}[{i}]")) is not None:
                headers.append(text)
        matches = []
        matches_path = _field(path, "headerMatches")
        for i, raw in enumerate(self.sequence(item.get("headerMatches", []), matches_path)):
            match = self.header_match(raw, f"{matches_path}[{i}]")
            if match is not None:
                matches.append(match)
        if len(self.violations) > before:
            return None
        return HttpRule(fields.get("method", ""), fields.get("path", ""), fields.get("host", ""),
                        tuple(headers), tuple(matches))

    def header_match(self, value: Any, path: str) -> HeaderMatch | None:
        item = self.mapping(value, path, {"name", "value", "mismatch"})
        if item is None:
            return None
        before = len(self.violations)
        name = ""
        if "name" not in item:
            self.fail(_field(path, "name"), "is required")
        else:
            name = self.string(item["name"], _field(path, "name")) or ""
        text = self.string(item["value"], _field(path, "value")) if "value" in item else ""
        mismatch = Mismatch.FAIL
        if "mismatch" in item and (raw := self.string(item["mismatch"],
                                                      _field(path, "mismatch"))) is not None:
            try:
                mismatch = Mismatch(raw) if raw else Mismatch.FAIL
            except ValueError:
                self.fail(_field(path, "mismatch"),
                          f"unknown action {shown(raw)}; one of LOG, ADD, DELETE, REPLACE")
        if len(self.violations) > before:
            return None
        return HeaderMatch(name, text or "", mismatch)

    def icmp_rule(self, value: Any, path: str) -> list[PortRange]:
        """One `icmps` item: its `fields`, each an ICMP type of a family (IPv4 by default) as
        a number 0-255 or Cilium's name of it; each becomes a one-type ICMP "port"."""
        item = self.mapping(value, path, {"fields"})
        if item is None:
            return []
        fields_path = _field(path, "fields")
        if "fields" not in item:
            self.fail(fields_path, "is required")
            return []
        items = self.sequence(item["fields"], fields_path)
        if isinstance(item["fields"], list) and not item["fields"]:
            self.fail(fields_path, "must not be empty")
        if len(items) > MAX_ICMP_FIELDS:
            self.fail(fields_path, f"has {len(items)} types, more than the limit of "
                                   f"{MAX_ICMP_FIELDS} (as in Cilium)")
            return []
        found = []
        for i, raw in enumerate(items):
            port = self.icmp_field(raw, f"{fields_path}[{i}]")
            if port is not None:
                found.append(port)
        return found

    def icmp_field(self, value: Any, path: str) -> PortRange | None:
        item = self.mapping(value, path, {"family", "type"})
        if item is None:
            return None
        family = "IPv4"
        if "family" in item:
            family = self.string(item["family"], _field(path, "family")) or ""
            if family and family not in ICMP_TYPES:
                self.fail(_field(path, "family"), f"must be IPv4 or IPv6, not {shown(family)}")
                family = ""
        if "type" not in item:
            self.fail(_field(path, "type"), "is required (a number 0-255 or a type name such "
                                            "as EchoRequest)")
            return None
        raw = item["type"]
        number: int | None = None
        if isinstance(raw, int) and not isinstance(raw, bool):
            number = raw
        elif isinstance(raw, str) and raw.isdigit():
            number = int(raw)
        elif isinstance(raw, str):
            names = ICMP_TYPES.get(family)
            if names is None:
                return None  # the family was refused; a name cannot be checked against it
            number = names.get(raw)
            if number is None:
                self.fail(_field(path, "type"), f"unknown {family} ICMP type {shown(raw)}; one "
                                                f"of {', '.join(names)} or a number 0-255")
                return None
        else:
            self.fail(_field(path, "type"), f"must be a number 0-255 or an ICMP type name, not "
                                            f"{_type_name(raw)}")
            return None
        if not 0 <= number <= 255:
            self.fail(_field(path, "type"), "must be 0-255")
            return None
        if not family:
            return None
        return PortRange(_ICMP_FAMILY_PROTOCOL[family], number, number)

    def port(self, value: Any, path: str) -> PortRange | None:
        item = self.mapping(value, path, {"port", "endPort", "protocol"})
        if item is None:
            return None
        before = len(self.violations)
        protocol = Protocol.ANY
        if "protocol" in item and (name := self.string(item["protocol"], _field(path, "protocol"))):
            protocol = _PORT_PROTOCOLS.get(name.upper(), Protocol.ANY)
            if name.upper() not in _PORT_PROTOCOLS:
                why = ("ICMP is not a toPorts protocol (as in Cilium); use icmps: "
                       "[{fields: [{type: ...}]}]" if name.upper().startswith("ICMP")
                       else f"unknown protocol {shown(name)}; one of TCP, UDP, SCTP, ANY")
                self.fail(_field(path, "protocol"), why)
        raw_port = item.get("port")
        if isinstance(raw_port, str) and raw_port and not raw_port.isdigit():
            # A named port (Cilium's meaning: the number endpoints give that name).
            if not is_port_name(raw_port):
                self.fail(_field(path, "port"), f"{shown(raw_port)} is neither a port number "
                                                f"nor a port name ({PORT_NAME_RULE})")
            if "endPort" in item:
                self.fail(_field(path, "endPort"), "needs a numeric port, not a port name")
            if len(self.violations) > before:
                return None
            return PortRange(protocol, name=raw_port)
        lo = self.port_number(raw_port, _field(path, "port"))
        hi = self.port_number(item.get("endPort"), _field(path, "endPort"))
        if hi is not None and lo is None and "port" not in item:
            self.fail(_field(path, "endPort"), "needs port")
        if lo is not None and hi is not None and hi < lo:
            self.fail(_field(path, "endPort"), f"must not be below port {lo}")
        if len(self.violations) > before:
            return None
        if lo is None:
            return PortRange(protocol)
        return PortRange(protocol, lo, hi if hi is not None else lo)

    def port_number(self, value: Any, path: str) -> int | None:
        if value is None:
            return None
        number: int | None = None
        if isinstance(value, bool):
            pass
        elif isinstance(value, int):
            number = value
        elif isinstance(value, str) and value.isdigit():
            number = int(value)
        if number is None:
            self.fail(path, f"must be a port number, not {_type_name(value)} ({shown(value)})")
            return None
        if not 1 <= number <= 65535:
            self.fail(path, "must be 1-65535")
            return None
        return number


def _namespace_requirement(namespace: str) -> Requirement:
    return Requirement(NAMESPACE_LABEL, Operator.IN, (namespace,), "k8s")


def _network_order(n: IPNetwork) -> tuple[int, int, int]:
    return n.version, int(n.network_address), n.prefixlen


_type_name = yamldocs.type_name
