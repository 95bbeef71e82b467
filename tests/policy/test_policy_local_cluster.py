"""`--policy-default-local-cluster`: endpoint peers that name no cluster select only the local
cluster's endpoints; peers naming a cluster, entities and the subject keep their scope; off
(the default, as in Cilium) every connected cluster's endpoints match."""

from __future__ import annotations

from controlplane.policy import Identity, PolicyRepository, TraceVerdict, parse_policies, trace

from .helpers import pod
from .test_policy_truth_table import ccnp, cnp

CLUSTER = "k8s:io.cilium.k8s.policy.cluster"
WEB = pod(app="web") | {f"{CLUSTER}=c1"}
LOCAL_CLI = pod(app="cli") | {f"{CLUSTER}=c1"}
REMOTE_CLI = pod(app="cli") | {f"{CLUSTER}=c2"}
IDS = {(1 << 16) | 1: WEB, (1 << 16) | 2: LOCAL_CLI, (2 << 16) | 2: REMOTE_CLI}

FROM_CLI = cnp("from-cli", """
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: cli}}]
""")
FROM_C2_CLI = cnp("from-c2-cli", """
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: cli, io.cilium.k8s.policy.cluster: c2}}]
""")
CW_FROM_CLI = ccnp("cw-from-cli", """
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: cli}}]
""")


def ingress_peers(policy: str, local_cluster: str) -> set[int]:
    repo = PolicyRepository(local_cluster=local_cluster)
    for ident, labels in IDS.items():
        repo.add_identity(Identity.of(ident, labels))
    repo.apply(parse_policies(policy))
    resolved = repo.resolved((1 << 16) | 1)
    assert resolved == repo.full_recompute()[(1 << 16) | 1]
    return {e.peer for e in resolved.entries if e.direction == "ingress"}


def test_off_by_default_a_selector_without_cluster_matches_every_cluster() -> None:
    assert ingress_peers(FROM_CLI, "") == {(1 << 16) | 2, (2 << 16) | 2}


def test_on_a_selector_without_cluster_matches_the_local_cluster_only() -> None:
    assert ingress_peers(FROM_CLI, "c1") == {(1 << 16) | 2}
    assert ingress_peers(CW_FROM_CLI, "c1") == {(1 << 16) | 2}


def test_on_a_selector_naming_a_cluster_keeps_it() -> None:
    assert ingress_peers(FROM_C2_CLI, "c1") == {(2 << 16) | 2}
    assert ingress_peers(FROM_C2_CLI, "") == {(2 << 16) | 2}


def test_trace_follows_the_flag() -> None:
    repo = PolicyRepository(local_cluster="c1")
    repo.apply(parse_policies(FROM_CLI))
    verdict = trace(list(repo.rules()), REMOTE_CLI, WEB, 80, 6)
    assert verdict.verdict is TraceVerdict.DENIED
    assert trace(list(repo.rules()), LOCAL_CLI, WEB, 80, 6).verdict is TraceVerdict.ALLOWED
