"""Repository behaviour an operator relies on: change sets, CIDR identities, entry limits."""

from __future__ import annotations

import pytest

from controlplane.policy import (
    Direction,
    Entry,
    Identity,
    InMemoryCidrIdentities,
    PolicyKey,
    PolicyMapOverflow,
    PolicyRepository,
    RuleRef,
    Verdict,
    parse_policies,
)

from .helpers import pod

SEED = """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: rule1}
spec:
  endpointSelector: {matchLabels: {org: empire, class: deathstar}}
  ingress:
  - fromEndpoints: [{matchLabels: {org: empire}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
"""
DEATHSTAR = Identity(300, pod(org="empire", **{"class": "deathstar"}))
TIEFIGHTER = Identity(301, pod(org="empire", **{"class": "tiefighter"}))
XWING = Identity(302, pod(org="alliance", **{"class": "xwing"}))


def seeded() -> PolicyRepository:
    repo = PolicyRepository()
    for identity in (DEATHSTAR, XWING):
        repo.add_identity(identity)
    repo.apply(parse_policies(SEED))
    return repo


def test_seed_entries_with_origins() -> None:
    repo = seeded()
    repo.add_identity(TIEFIGHTER)
    resolved = repo.resolved(DEATHSTAR.id, origins=True)
    assert resolved.ingress_enforced and not resolved.egress_enforced
    expected = [Entry(Direction.INGRESS, peer, 6, 80, 80, Verdict.ALLOW)
                for peer in (DEATHSTAR.id, TIEFIGHTER.id)]
    assert list(resolved.entries) == expected
    ref = RuleRef(PolicyKey("default", "rule1"), "spec.ingress[0]")
    assert all(resolved.origins[e] == (ref,) for e in expected)
    assert repo.resolved(XWING.id).entries == ()


def test_new_identity_reports_only_affected_identities() -> None:
    repo = seeded()
    assert repo.add_identity(TIEFIGHTER) == {TIEFIGHTER.id, DEATHSTAR.id}
    assert repo.add_identity(Identity(303, pod(org="alliance"))) == {303}
    assert repo.add_identity(TIEFIGHTER) == frozenset()  # idempotent
    assert repo.remove_identity(TIEFIGHTER.id) == {TIEFIGHTER.id, DEATHSTAR.id}


def test_policy_change_reports_selected_identities() -> None:
    repo = seeded()
    (changed_port,) = parse_policies(SEED.replace('"80"', '"8080"'))
    assert repo.upsert(changed_port) == {DEATHSTAR.id}
    assert repo.upsert(changed_port) == frozenset()
    described = parse_policies(SEED.replace('"80"', '"8080"')
                               .replace("spec:\n", "spec:\n  description: same rules\n"))
    assert repo.apply(described) == frozenset()
    assert repo.delete(PolicyKey("default", "rule1")) == {DEATHSTAR.id}
    assert repo.resolved(DEATHSTAR.id).entries == ()
    assert not repo.resolved(DEATHSTAR.id).ingress_enforced


def test_identical_entries_from_two_rules_are_one_entry() -> None:
    repo = seeded()
    twice = SEED.replace("rule1", "rule2")
    repo.apply(parse_policies(twice))
    entries = repo.resolved(DEATHSTAR.id, origins=True)
    assert len(entries.entries) == 1
    assert [str(r.policy) for r in entries.origins[entries.entries[0]]] == [
        "default/rule1", "default/rule2"]
    repo.delete(PolicyKey("default", "rule1"))
    assert len(repo.resolved(DEATHSTAR.id).entries) == 1


def test_cidr_identities_are_allocated_and_released() -> None:
    allocator = InMemoryCidrIdentities(first=5000)
    repo = PolicyRepository(allocator)
    web = Identity(400, pod(app="web"))
    repo.add_identity(web)
    repo.apply(parse_policies("""apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: out}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.96.0.0/12]}]
"""))
    assert allocator.ids == {"10.0.0.0/8": 5000, "10.96.0.0/12": 5001}
    peers = {e.peer for e in repo.resolved(web.id).entries}
    assert peers == {5000}
    repo.add_identity(Identity(6000, frozenset({"cidr:10.1.0.0/16"})))
    assert {e.peer for e in repo.resolved(web.id).entries} == {5000, 6000}
    repo.delete(PolicyKey("default", "out"))
    assert allocator.ids == {}
    assert not any(i.id in (5000, 5001) for i in repo.identities())


def test_overflow_refuses_apply_and_changes_nothing() -> None:
    allocator = InMemoryCidrIdentities()
    repo = PolicyRepository(allocator, policy_map_max=3)
    for i in range(3):
        repo.add_identity(Identity(500 + i, pod(app="api", n=str(i))))
    before = repo.resolve_all()
    many = """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: wide}
spec:
  endpointSelector: {matchLabels: {n: "0"}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: api}}]
    toPorts: [{ports: [{port: "80"}, {port: "443"}]}]
  - fromCIDR: [192.168.0.0/16]
"""
    policies = parse_policies(many)
    overflows = repo.check(policies)
    assert [(o.identity, o.count) for o in overflows] == [(500, 7)]
    with pytest.raises(PolicyMapOverflow) as caught:
        repo.apply(policies)
    assert "identity 500 would have 7 policy entries" in str(caught.value)
    assert repo.resolve_all() == before
    assert repo.policies() == []
    assert allocator.ids == {}
    assert repo.resolve_all() == repo.full_recompute()


def test_check_of_a_replacement_counts_the_new_version_only() -> None:
    repo = PolicyRepository(policy_map_max=2)
    repo.add_identity(Identity(500, pod(app="api")))
    repo.apply(parse_policies(SEED.replace("{org: empire, class: deathstar}", "{app: api}")
                              .replace("{org: empire}", "{app: api}")))
    assert repo.entry_count(500) == 1
    assert repo.check(parse_policies(SEED.replace("{org: empire, class: deathstar}",
                                                  "{app: api}"))) == []
    assert repo.entry_count(500) == 1


def test_relabelled_identity_moves_between_selectors() -> None:
    repo = seeded()
    repo.add_identity(TIEFIGHTER)
    defected = Identity(TIEFIGHTER.id, pod(org="alliance", **{"class": "tiefighter"}))
    assert repo.add_identity(defected) == {TIEFIGHTER.id, DEATHSTAR.id}
    assert {e.peer for e in repo.resolved(DEATHSTAR.id).entries} == {DEATHSTAR.id}


def test_reserved_identities_are_known_but_never_subjects() -> None:
    repo = PolicyRepository()
    assert {i.id for i in repo.identities()} == set(range(1, 12))
    repo.apply(parse_policies("""apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: all}
spec:
  endpointSelector: {}
  ingress: [{fromEntities: [host, world]}]
"""))
    assert repo.resolve_all() == {}
    web = Identity(700, pod(app="web"))
    repo.add_identity(web)
    assert {e.peer for e in repo.resolved(700).entries} == {1, 2, 9, 10}


def test_each_operation_returns_its_changes_and_a_dry_run_changes_nothing() -> None:
    repo = seeded()
    assert repo.add_identity(TIEFIGHTER) == {TIEFIGHTER.id, DEATHSTAR.id}
    before = repo.resolve_all()
    assert repo.check(parse_policies(SEED.replace('"80"', '"81"'))) == []
    assert repo.resolve_all() == before
    assert repo.apply(parse_policies(SEED.replace('"80"', '"81"'))) == {DEATHSTAR.id}
    assert repo.add_identity(TIEFIGHTER) == frozenset()
