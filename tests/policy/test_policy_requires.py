"""`fromRequires`/`toRequires` with Cilium's (deprecated) meaning: the requirements of every
rule selecting an endpoint constrain the endpoint-selector peers of every rule of the same
direction and verdict selecting it. Rows are checked by trace and by resolved entries; the
incremental engine must equal a full recompute whatever the order of events."""

from __future__ import annotations

import random

import pytest

from controlplane.policy import Identity, PolicyRepository, TraceVerdict, parse_policies

from .helpers import pod, reserved, resolved_verdicts, traced
from .test_policy_parse import problems
from .test_policy_truth_table import ccnp, cnp

ALLOWED, DENIED = TraceVerdict.ALLOWED, TraceVerdict.DENIED
TCP = 6
PROD_DB = pod(app="db", env="prod")
DEV_DB = pod(app="db", env="dev")
PROD_FRONTEND = pod(role="frontend", env="prod")
DEV_FRONTEND = pod(role="frontend", env="dev")
OTHER_NS_PROD_FRONTEND = pod("other", role="frontend", env="prod")
PROD_WEB = pod(app="web", env="prod")

REQUIRE_PROD = cnp("require-prod", """
  endpointSelector: {matchLabels: {env: prod}}
  ingress:
  - fromRequires: [{matchLabels: {env: prod}}]
""")
FROM_FRONTEND = cnp("from-frontend", """
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{matchLabels: {role: frontend}}]
""")
FROM_FRONTEND_ANY_NS = cnp("from-frontend-any-ns", """
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{matchLabels: {role: frontend, k8s:io.kubernetes.pod.namespace: other}}]
""")
PORT_ONLY = cnp("port-only", """
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - toPorts: [{ports: [{port: '80', protocol: TCP}]}]
""")
FROM_HOST = cnp("from-host", """
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEntities: [host]
""")
SAME_RULE = cnp("same-rule", """
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{matchLabels: {role: frontend}}]
    fromRequires: [{matchLabels: {env: prod}}]
""")
ALL_CW_REQUIRE = ccnp("all-require", """
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{}]
    fromRequires: [{matchLabels: {env: prod}}]
""")
DENY_FRONTEND_REQUIRE_DEV = cnp("deny-dev-frontends", """
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {role: frontend}}]
    fromRequires: [{matchLabels: {env: dev}}]
""")
EGRESS_REQUIRE = cnp("egress-require", """
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toEndpoints: [{matchLabels: {app: db}}]
  - toRequires: [{matchLabels: {env: prod}}]
""")

ROWS = [
    ("requirement met", REQUIRE_PROD + FROM_FRONTEND, PROD_FRONTEND, PROD_DB, 5432, ALLOWED),
    ("requirement not met", REQUIRE_PROD + FROM_FRONTEND, DEV_FRONTEND, PROD_DB, 5432, DENIED),
    ("requirement alone allows nothing", REQUIRE_PROD, PROD_FRONTEND, PROD_DB, 5432, DENIED),
    ("endpoint not selected by the requirement", REQUIRE_PROD + FROM_FRONTEND, DEV_FRONTEND,
     DEV_DB, 5432, ALLOWED),
    ("requirement scoped to the policy namespace", REQUIRE_PROD + FROM_FRONTEND_ANY_NS,
     OTHER_NS_PROD_FRONTEND, PROD_DB, 5432, DENIED),
    ("without the requirement: other namespace", FROM_FRONTEND_ANY_NS,
     OTHER_NS_PROD_FRONTEND, PROD_DB, 5432, ALLOWED),
    ("ports-only wildcard not constrained", REQUIRE_PROD + PORT_ONLY, DEV_FRONTEND, PROD_DB,
     80, ALLOWED),
    ("entities not constrained", REQUIRE_PROD + FROM_HOST, reserved("host"), PROD_DB, 5432,
     ALLOWED),
    ("in the same rule", SAME_RULE, DEV_FRONTEND, DEV_DB, 5432, DENIED),
    ("in the same rule, met", SAME_RULE, PROD_FRONTEND, DEV_DB, 5432, ALLOWED),
    ("clusterwide wildcard constrained", ALL_CW_REQUIRE, PROD_WEB, DEV_DB, 1, ALLOWED),
    ("clusterwide wildcard constrained, not met", ALL_CW_REQUIRE, DEV_FRONTEND, DEV_DB, 1,
     DENIED),
    ("clusterwide wildcard: reserved peers lack the labels", ALL_CW_REQUIRE, reserved("host"),
     DEV_DB, 1, DENIED),
    ("deny requirement narrows the deny", DENY_FRONTEND_REQUIRE_DEV, PROD_FRONTEND, PROD_DB, 1,
     ALLOWED),
    ("deny requirement met: denied", DENY_FRONTEND_REQUIRE_DEV, DEV_FRONTEND, PROD_DB, 1,
     DENIED),
    ("deny requirements leave allows alone", DENY_FRONTEND_REQUIRE_DEV, PROD_WEB, PROD_DB, 1,
     ALLOWED),
    ("toRequires met", EGRESS_REQUIRE, PROD_WEB, PROD_DB, 5432, ALLOWED),
    ("toRequires not met", EGRESS_REQUIRE, PROD_WEB, DEV_DB, 5432, DENIED),
]


@pytest.mark.parametrize(("name", "policies", "src", "dst", "port", "expected"), ROWS,
                         ids=[r[0] for r in ROWS])
def test_requires_rows(name: str, policies: str, src: frozenset[str], dst: frozenset[str],
                       port: int, expected: TraceVerdict) -> None:
    verdict, traced_egress, traced_ingress = traced(policies, src, dst, port, TCP)
    assert verdict is expected
    assert resolved_verdicts(policies, src, dst, port, TCP) == (traced_egress, traced_ingress)


IDENTITIES = [PROD_DB, DEV_DB, PROD_FRONTEND, DEV_FRONTEND, OTHER_NS_PROD_FRONTEND, PROD_WEB,
              pod(app="db", env="prod", tier="x")]


@pytest.mark.parametrize("seed", range(12))
def test_incremental_equals_full_recompute(seed: int) -> None:
    """Identities and policies (with and without requirements) added and removed in random
    orders: the incremental result always equals a recompute from scratch."""
    rng = random.Random(seed)
    texts = [REQUIRE_PROD, FROM_FRONTEND, SAME_RULE, ALL_CW_REQUIRE, DENY_FRONTEND_REQUIRE_DEV,
             EGRESS_REQUIRE, PORT_ONLY]
    policies = [p for text in texts for p in parse_policies(text)]
    repo = PolicyRepository()
    events: list[tuple[str, int]] = ([("id", i) for i in range(len(IDENTITIES))]
                                     + [("policy", i) for i in range(len(policies))])
    rng.shuffle(events)
    for kind, i in events + rng.sample(events, len(events) // 2):
        if kind == "id":
            if rng.random() < 0.3:
                repo.remove_identity(2000 + i)
            repo.add_identity(Identity(2000 + i, IDENTITIES[i]))
        elif repo.get_policy(policies[i].key) is not None and rng.random() < 0.5:
            repo.delete(policies[i].key)
        else:
            repo.apply([policies[i]])
        assert repo.resolve_all() == repo.full_recompute()


@pytest.mark.parametrize(("section", "field"), [("ingress", "fromRequires"),
                                                ("ingressDeny", "fromRequires"),
                                                ("egress", "toRequires"),
                                                ("egressDeny", "toRequires")])
def test_requires_rejected_with_paths(section: str, field: str) -> None:
    head = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p}\n"
    found = problems(head + f"spec:\n  endpointSelector: {{}}\n  {section}:\n"
                            f"  - {field}: [{{matchLabels: {{'a b': c}}}}, 5]\n")
    assert found == {
        f"spec.{section}[0].{field}[0].matchLabels.a b": "'a b' is not a valid label key",
        f"spec.{section}[0].{field}[1]": "must be a mapping, not an integer",
    }
    other = "toRequires" if field == "fromRequires" else "fromRequires"
    found = problems(head + f"spec:\n  endpointSelector: {{}}\n  {section}:\n"
                            f"  - {other}: [{{}}]\n")
    assert found == {f"spec.{section}[0].{other}": "unknown field"}
