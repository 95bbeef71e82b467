"""The policy repository: the public face of resolution.

Fed identities (add/remove, from the identity store) and policies (upsert/delete, from etcd),
it keeps every endpoint identity's resolved policy current through the incremental `Engine`;
each operation returns the identities whose resolved policy it changed (nothing is kept for
anyone to drain later). It also owns the CIDR identities that
policies need and the per-identity entry limit (a BPF policy map has a fixed size; overflowing
it silently drops traffic, so an apply that would overflow is refused before anything changes).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from bulkhead import fqdnmatch
from controlplane.policy.cidr import CidrIdentities, InMemoryCidrIdentities, cidr_label
from controlplane.policy.engine import Engine
from controlplane.policy.labels import ParsedLabels
from controlplane.policy.localcluster import scope_to_cluster
from controlplane.policy.model import (
    Identity,
    NamedPorts,
    Policy,
    PolicyKey,
    ResolvedPolicy,
    Rule,
    reserved_identities,
)
from controlplane.policy.selector import CidrSelector, FqdnSelector

DEFAULT_POLICY_MAP_MAX = 16384


@dataclass(frozen=True)
class Overflow:
    """An identity whose entry count would exceed the policy map size."""

    identity: int
    count: int
    limit: int

    def __str__(self) -> str:
        return (f"identity {self.identity} would have {self.count} policy entries, "
                f"more than the policy map size {self.limit}")


class PolicyMapOverflow(Exception):
    """The apply was refused; nothing changed."""

    def __init__(self, overflows: list[Overflow]) -> None:
        super().__init__("; ".join(str(o) for o in overflows))
        self.overflows = overflows


class _PlannedCidrs:
    """Dry-run allocator: known prefixes keep their ids, new ones get placeholders (< 0), and the
    real allocator is never called, so a refused apply allocates nothing."""

    def __init__(self, known: dict[str, int]) -> None:
        self._known = known
        self._next = -1

    def ensure(self, prefix: str) -> int:
        if prefix not in self._known:
            self._known = {**self._known, prefix: self._next}
            self._next -= 1
        return self._known[prefix]

    def release(self, prefix: str) -> None:
        pass


class PolicyRepository:
    """Identities and policies in, resolved policies and change sets out. Not thread-safe."""

    def __init__(self, cidr_identities: CidrIdentities | None = None, *,
                 policy_map_max: int = DEFAULT_POLICY_MAP_MAX,
                 with_reserved: bool = True, local_cluster: str = "") -> None:
        self.policy_map_max = policy_map_max
        self.local_cluster = local_cluster
        """Set (`--policy-default-local-cluster`): endpoint peers that name no cluster select
        this cluster's endpoints only (controlplane/policy/localcluster.py)."""
        self._allocator: CidrIdentities = cidr_identities or InMemoryCidrIdentities()
        self._engine = Engine()
        self._policies: dict[PolicyKey, Policy] = {}
        self._external: set[int] = set()
        self._cidr_ids: dict[str, int] = {}
        self._cidr_refs: dict[str, int] = {}
        if with_reserved:
            for identity in reserved_identities():
                self.add_identity(identity)

    # -- identities ----------------------------------------------------------------------
    def add_identity(self, identity: Identity) -> frozenset[int]:
        """Adds (or relabels) an identity; returns the identities whose policy changed."""
        labels = ParsedLabels.of(identity.labels)
        changed: set[int] = set()
        if self._engine.has_identity(identity.id):
            if self._engine.index.labels[identity.id] == labels:
                self._external.add(identity.id)
                return frozenset()
            changed = self._engine.remove_identity(identity.id)
        self._external.add(identity.id)
        return frozenset(changed | self._engine.add_identity(identity.id, labels))

    def set_named_ports(self, identity: int, named: NamedPorts) -> frozenset[int]:
        """The named ports (`name -> {(protocol, number)}`) of the identity's endpoints, what
        `toPorts` port names resolve against; returns the identities whose policy changed."""
        return frozenset(self._engine.set_named_ports(identity, named))

    def named_ports(self, identity: int | None = None) -> NamedPorts:
        """One identity's named ports, or (None) every endpoint's together."""
        if identity is not None:
            return self._engine.named.get(identity, {})
        found: dict[str, set[tuple[int, int]]] = {}
        for named in self._engine.named.values():
            for name, pairs in named.items():
                found.setdefault(name, set()).update(pairs)
        return {name: frozenset(pairs) for name, pairs in found.items()}

    def remove_identity(self, identity: int) -> frozenset[int]:
        """Removes an identity (still kept while a policy needs it as a CIDR identity)."""
        self._external.discard(identity)
        if not self._engine.has_identity(identity) or identity in self._cidr_ids.values():
            return frozenset()
        return frozenset(self._engine.remove_identity(identity))

    def identities(self) -> list[Identity]:
        known = sorted(self._engine.index.labels.items())
        return [Identity(i, labels.labels) for i, labels in known]

    # -- policies ------------------------------------------------------------------------
    def policies(self) -> list[Policy]:
        return [self._policies[k] for k in sorted(self._policies)]

    def get_policy(self, key: PolicyKey) -> Policy | None:
        return self._policies.get(key)

    def rules(self) -> Iterator[Rule]:
        for policy in self.policies():
            yield from policy.rules

    def identity_labels(self) -> Mapping[int, ParsedLabels]:
        """Every identity the repository knows (reserved and CIDR ones included): the peers
        host policies resolve against (`controlplane.policy.hosts`)."""
        return self._engine.index.labels

    def upsert(self, policy: Policy) -> frozenset[int]:
        """Adds or replaces one policy unconditionally (the store already accepted it)."""
        return self.apply([policy], (), check=False)

    def delete(self, key: PolicyKey) -> frozenset[int]:
        return self.apply((), [key], check=False)

    def check(self, upserts: Iterable[Policy], deletes: Iterable[PolicyKey] = ()) -> list[Overflow]:
        """The identities the change would push above the policy map size, without applying it.

        Implemented as apply-then-undo on the live state (with a dry-run CIDR allocator), which
        is exact because resolution depends only on the inputs, not on their order."""
        upserts, deletes = list(upserts), list(deletes)
        previous = {p.key: self._policies.get(p.key) for p in upserts}
        previous.update({k: self._policies.get(k) for k in deletes})
        real, self._allocator = self._allocator, _PlannedCidrs(dict(self._cidr_ids))
        try:
            touched = self._apply(upserts, deletes)
            after = {i: self._engine.entry_count(i) for i in touched}
            restore = [p for p in previous.values() if p is not None]
            self._apply(restore, [k for k, p in previous.items() if p is None])
            before = {i: self._engine.entry_count(i) for i in touched}
        finally:
            self._allocator = real
        return [Overflow(i, after[i], self.policy_map_max) for i in sorted(touched)
                if i >= 0 and after[i] > self.policy_map_max and after[i] > before.get(i, 0)]

    def apply(self, upserts: Iterable[Policy], deletes: Iterable[PolicyKey] = (), *,
              check: bool = True) -> frozenset[int]:
        """Applies upserts and deletes together; returns the identities whose policy changed.
        With `check`, raises PolicyMapOverflow first if any identity would overflow."""
        upserts, deletes = list(upserts), list(deletes)
        if check:
            overflows = self.check(upserts, deletes)
            if overflows:
                raise PolicyMapOverflow(overflows)
        return frozenset(self._apply(upserts, deletes))

    # -- results -------------------------------------------------------------------------
    def resolved(self, identity: int, *, origins: bool = False) -> ResolvedPolicy:
        return self._engine.resolved(identity, origins=origins)

    def enforcement(self, identity: int) -> tuple[bool, bool]:
        """(ingress enforced, egress enforced): `resolved(identity)`'s flags, cheaply."""
        return self._engine.enforcement(identity)

    def resolve_all(self) -> dict[int, ResolvedPolicy]:
        """The current (incrementally maintained) policy of every endpoint identity."""
        return {i: self._engine.resolved(i) for i in sorted(self._engine.endpoints())}

    def full_recompute(self) -> dict[int, ResolvedPolicy]:
        """Resolves everything from scratch; must equal `resolve_all()`."""
        engine = Engine()
        for identity, labels in sorted(self._engine.index.labels.items()):
            engine.add_identity(identity, labels)
        for identity, named in sorted(self._engine.named.items()):
            engine.set_named_ports(identity, named)
        engine.add_rules(r for r in self.rules() if not r.host)
        return {i: engine.resolved(i) for i in sorted(engine.endpoints())}

    def entry_count(self, identity: int) -> int:
        return self._engine.entry_count(identity)

    # -- internals -----------------------------------------------------------------------
    def _apply(self, upserts: list[Policy], deletes: list[PolicyKey]) -> set[int]:
        """Applies without checking; returns the identities whose policy changed."""
        if self.local_cluster:
            upserts = [scope_to_cluster(p, self.local_cluster) for p in upserts]
        changed: set[int] = set()
        for key in deletes:
            old = self._policies.pop(key, None)
            if old is not None:
                changed |= self._engine.remove_rules(r.ref for r in old.rules if not r.host)
                changed |= self._release_cidrs(old)
        for policy in upserts:
            old = self._policies.get(policy.key)
            if old is not None and old.rules == policy.rules:
                self._policies[policy.key] = policy
                continue
            changed |= self._hold_cidrs(policy)
            if old is not None:
                changed |= self._engine.remove_rules(r.ref for r in old.rules if not r.host)
            self._policies[policy.key] = policy
            changed |= self._engine.add_rules(r for r in policy.rules if not r.host)
            if old is not None:
                changed |= self._release_cidrs(old)
        return changed

    def _hold_cidrs(self, policy: Policy) -> set[int]:
        changed: set[int] = set()
        for prefix in cidr_prefixes(policy):
            count = self._cidr_refs.get(prefix, 0)
            self._cidr_refs[prefix] = count + 1
            if count:
                continue
            identity = self._allocator.ensure(prefix)
            self._cidr_ids[prefix] = identity
            if not self._engine.has_identity(identity):
                changed |= self._engine.add_identity(identity,
                                                     ParsedLabels.of([cidr_label(prefix)]))
        return changed

    def _release_cidrs(self, policy: Policy) -> set[int]:
        changed: set[int] = set()
        for prefix in cidr_prefixes(policy):
            count = self._cidr_refs[prefix] - 1
            if count:
                self._cidr_refs[prefix] = count
                continue
            del self._cidr_refs[prefix]
            identity = self._cidr_ids.pop(prefix)
            if identity not in self._external:
                changed |= self._engine.remove_identity(identity)
            self._allocator.release(prefix)
        return changed


def cidr_prefixes(policy: Policy) -> list[str]:
    """The distinct prefixes that need a CIDR identity for `policy`, and its `toFQDNs`
    selectors as `fqdn:<pattern>` keys (an identity each, allocated and held the same way)."""
    found: dict[str, None] = {}
    for rule in policy.rules:
        for peer in rule.peers:
            if isinstance(peer, CidrSelector):
                found.update((str(p), None) for p in peer.prefixes())
            elif isinstance(peer, FqdnSelector):
                found[fqdnmatch.label(peer.pattern)] = None
    return list(found)



