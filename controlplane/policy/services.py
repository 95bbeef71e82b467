"""`toServices`: a rule's service items become peers, from the services of the moment.

Cilium turns each service a `toServices` item selects into peers for its backends. Here a
service's backends are the endpoints of its namespace whose `k8s:` labels carry every
`key=value` of its selector (`controlplane/services/backends.py`), which is exactly what a
label selector of those requirements plus the namespace matches: the peer follows backends
coming and going with no re-resolution, and only a service appearing, going, or changing its
labels or selector changes the rule. A service without a selector has no backends and adds no
peer. Pure: the resolver hands in the services (`ServiceInfo`) it derives from etcd.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from controlplane.identity.labels import NAMESPACE_LABEL
from controlplane.policy.labels import ParsedLabels
from controlplane.policy.model import Policy, Rule
from controlplane.policy.selector import LabelSelector, Operator, Requirement, Selector


@dataclass(frozen=True)
class ServiceInfo:
    """What rules need of a service: its name, labels and selector ("key=value" each)."""

    namespace: str
    name: str
    labels: tuple[str, ...] = ()
    selector: tuple[str, ...] = ()

    def backend_selector(self) -> LabelSelector | None:
        """The peer matching the service's backends; None when it has no selector."""
        if not self.selector:
            return None
        requirements = {Requirement(NAMESPACE_LABEL, Operator.IN, (self.namespace,), "k8s")}
        for pair in self.selector:
            key, _, value = pair.partition("=")
            requirements.add(Requirement(key, Operator.IN, (value,), "k8s"))
        return LabelSelector(tuple(sorted(requirements)))

    def parsed_labels(self) -> ParsedLabels:
        return ParsedLabels.of(f"k8s:{pair}" for pair in self.labels)


def uses_services(policy: Policy) -> bool:
    return any(rule.services for rule in policy.rules)


def expand(policy: Policy, services: Iterable[ServiceInfo]) -> Policy:
    """`policy` with each `toServices` rule's peers extended by the backends of the services
    it selects (the policy itself when it has no such rule)."""
    if not uses_services(policy):
        return policy
    infos = [(s, s.parsed_labels()) for s in sorted(services, key=lambda s: (s.namespace,
                                                                                s.name))]
    return replace(policy, rules=tuple(_expand_rule(rule, infos) for rule in policy.rules))


def _expand_rule(rule: Rule, services: list[tuple[ServiceInfo, ParsedLabels]]) -> Rule:
    if not rule.services:
        return rule
    peers: list[Selector] = list(rule.peers)
    for service, labels in services:
        if any(ref.matches(service.namespace, service.name, labels) for ref in rule.services):
            selector = service.backend_selector()
            if selector is not None:
                peers.append(selector)
    return replace(rule, peers=tuple(dict.fromkeys(peers)))
