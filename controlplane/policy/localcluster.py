"""`--policy-default-local-cluster` (Cilium's `policy-default-local-cluster`, off by default):
an endpoint peer selector (`fromEndpoints`/`toEndpoints`) that names no cluster selects only
endpoints of the local cluster, so a policy written for one cluster does not start admitting
remote clusters' workloads once the cluster joins a mesh. Peers that name the cluster label,
or a reserved label, keep their scope."""

from __future__ import annotations

import dataclasses

from controlplane.identity.labels import CLUSTER_LABEL
from controlplane.policy.model import Policy, Rule
from controlplane.policy.selector import LabelSelector, Operator, Requirement, Selector


def scope_to_cluster(policy: Policy, cluster: str) -> Policy:
    """`policy` with its endpoint peers that name no cluster limited to `cluster`."""
    rules = tuple(_scoped(rule, cluster) for rule in policy.rules)
    return policy if rules == policy.rules else dataclasses.replace(policy, rules=rules)


def _scoped(rule: Rule, cluster: str) -> Rule:
    peers = tuple(_peer(p, cluster) if i < rule.endpoint_peers else p
                  for i, p in enumerate(rule.peers))
    return rule if peers == rule.peers else dataclasses.replace(rule, peers=peers)


def _peer(peer: Selector, cluster: str) -> Selector:
    if not isinstance(peer, LabelSelector) or peer.names_reserved() or any(
            r.key == CLUSTER_LABEL for r in peer.requirements):
        return peer
    return peer.with_requirement(Requirement(CLUSTER_LABEL, Operator.IN, (cluster,), "k8s"))
