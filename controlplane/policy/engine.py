"""Incremental resolution: identities + rules -> per-identity entries, kept current.

State per subject identity: the rules selecting it, how many of them per direction (a
direction is enforced while that count is positive) and a multiset of entries (the same entry
can come from several rules or several peers of one rule; it exists while its count is
positive). Every event touches only what it must:

- a new identity: the selectors that match it (from the selector cache) — as a subject it gets
  the rules of those selectors, as a peer it adds one entry per port range to each subject of
  the rules that name those selectors;
- a rule added or removed: the subjects its selector matches.

Requirements (`fromRequires`/`toRequires`, Cilium's deprecated meaning): each subject gathers
the requirement selectors of the rules selecting it, per direction and verdict (a multiset),
and an endpoint-selector peer of any rule in that bucket admits only identities matching all
of them. A requiring rule appearing or going re-contributes the subject's rules of its bucket;
subjects with requirements are few, and only they pay for it.

Each operation returns the subjects whose entries or enforcement flags appeared or disappeared
(what the subscription layer pushes); the engine keeps no change set of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bulkhead.httprules import HttpRule
from controlplane.policy.counted import adjust
from controlplane.policy.l7merge import ContributionKey, merge
from controlplane.policy.labels import ParsedLabels
from controlplane.policy.model import (
    Direction,
    Entry,
    NamedPorts,
    ResolvedPolicy,
    Rule,
    RuleRef,
    Verdict,
)
from controlplane.policy.selector import LabelSelector
from controlplane.policy.selectorcache import CachedSelector, LabelKeyIndex, SelectorCache

EntryKey = tuple[Direction, int, int, int, int, Verdict]
"""Entry fields as a plain tuple (cheap to build and hash); sorts like `Entry`."""
_Template = tuple[Direction, int, int, int, Verdict, tuple[HttpRule, ...]]
"""direction, protocol, ports, verdict and the HTTP rules of an L7 item (() = plain)"""
_Named = tuple[Direction, int, str, Verdict, tuple[HttpRule, ...]]
"""a named port's template: direction, protocol (0 any), name, verdict, HTTP rules"""


@dataclass(eq=False)
class _RuleState:
    rule: Rule
    subject: CachedSelector
    peers: list[CachedSelector | None]
    """None = wildcard peer (entry peer 0)"""
    templates: list[_Template]
    direction_index: int
    named: list[_Named] = field(default_factory=list)
    """named ports: their numbers come from the subject (ingress) or every endpoint (egress)"""
    constrained: set[CachedSelector] = field(default_factory=set)
    """cached peers from endpoint selectors: requirements filter their identities"""
    constrained_wildcard: bool = False
    """an endpoint selector matching everything (`fromEndpoints: [{}]` clusterwide)"""
    bucket: int = 0
    """Rule.requirement_bucket, kept at hand for the hot path"""


@dataclass(eq=False)
class _Subject:
    rules: set[_RuleState] = field(default_factory=set)
    enforced: list[int] = field(default_factory=lambda: [0, 0])
    entries: dict[ContributionKey, int] = field(default_factory=dict)
    """multiset of contributions: the same entry from a plain port and from L7 items are
    distinct contributions; `l7merge` folds them into one entry"""
    l7: dict[EntryKey, int] = field(default_factory=dict)
    """distinct L7 contributions per entry (plain ones need no count: at most one per entry)"""
    requires: list[dict[LabelSelector, int]] = field(
        default_factory=lambda: [{}, {}, {}, {}])
    """requirement selectors per bucket (Rule.requirement_bucket), counted per rule"""
    dns: dict[str, int] = field(default_factory=dict)
    """`rules.dns` patterns of the rules selecting the subject, counted per rule"""

    def admits(self, state: _RuleState, labels: ParsedLabels) -> bool:
        return all(r.matches(labels) for r in self.requires[state.bucket])


class Engine:
    """The incremental core. Not thread-safe: callers serialize operations."""

    def __init__(self) -> None:
        self.index = LabelKeyIndex()
        self.cache = SelectorCache(self.index)
        self._rules: dict[RuleRef, _RuleState] = {}
        self._subjects: dict[int, _Subject] = {}
        self._endpoints: set[int] = set()
        self._peer_users: dict[CachedSelector, dict[_RuleState, int]] = {}
        self._subject_users: dict[CachedSelector, set[_RuleState]] = {}
        self._required: set[int] = set()
        """subjects with requirements (their constrained wildcards follow every identity)"""
        self.named: dict[int, NamedPorts] = {}
        """identity -> the named ports of its endpoints"""
        self._named_all: dict[str, dict[tuple[int, int], int]] = {}
        """name -> (protocol, number) -> how many identities serve it (egress resolution)"""

    # -- identities ----------------------------------------------------------------------
    def has_identity(self, identity: int) -> bool:
        return identity in self.index.labels

    def add_identity(self, identity: int, labels: ParsedLabels) -> set[int]:
        """Adds an identity; returns the identities whose resolved policy changed."""
        changed: set[int] = set()
        self.index.add(identity, labels)
        matched = self.cache.identity_added(identity, labels)
        endpoint = labels.is_endpoint
        if endpoint:
            self._endpoints.add(identity)
            changed.add(identity)
        subjects, endpoints = self._subjects, self._endpoints
        for cached in matched:
            if endpoint:
                for state in self._subject_users.get(cached, ()):
                    self._contribute(state, identity, 1, changed)
            for state, times in self._peer_users.get(cached, {}).items():
                constrained = cached in state.constrained
                for subject in state.subject.matches:
                    if subject == identity or subject not in endpoints:
                        continue
                    if (constrained and subjects[subject].requires[state.bucket]
                            and not subjects[subject].admits(state, labels)):
                        continue
                    self._add_peer(subjects[subject], subject, state, identity, times, changed)
        self._constrained_wildcards(identity, labels, 1, changed)
        return changed

    def _constrained_wildcards(self, identity: int, labels: ParsedLabels, sign: int,
                               changed: set[int]) -> None:
        """An identity appearing (1) or going (-1) as a peer of constrained wildcards: those
        of subjects with requirements list matching identities instead of "any peer"."""
        for subject_id in list(self._required):
            if subject_id == identity:
                continue
            subject = self._subjects[subject_id]
            for state in subject.rules:
                if (state.constrained_wildcard and subject.requires[state.bucket]
                        and subject.admits(state, labels)):
                    self._add_peer(subject, subject_id, state, identity, sign, changed)

    def remove_identity(self, identity: int) -> set[int]:
        """Removes an identity; returns the identities whose resolved policy changed."""
        changed: set[int] = set()
        matched = self.cache.identity_removed(identity)
        labels = self.index.remove(identity)
        if identity in self._endpoints:
            self._endpoints.discard(identity)
            self._subjects.pop(identity, None)
            self._required.discard(identity)
            changed.add(identity)
        subjects, endpoints = self._subjects, self._endpoints
        for cached in matched:
            for state, times in self._peer_users.get(cached, {}).items():
                constrained = cached in state.constrained
                for subject in state.subject.matches:
                    if subject not in endpoints:
                        continue
                    if (constrained and subjects[subject].requires[state.bucket]
                            and not subjects[subject].admits(state, labels)):
                        continue
                    self._add_peer(subjects[subject], subject, state, identity, -times,
                                   changed)
        self._constrained_wildcards(identity, labels, -1, changed)
        return changed

    # -- rules ---------------------------------------------------------------------------
    def add_rules(self, rules: Iterable[Rule]) -> set[int]:
        """Adds rules; returns the identities whose resolved policy changed."""
        changed: set[int] = set()
        for rule in rules:
            state = _RuleState(
                rule,
                self.cache.acquire(rule.subject),
                [None if p.is_wildcard else self.cache.acquire(p) for p in rule.peers],
                [(rule.direction, int(p.protocol), p.port_lo, p.port_hi, rule.verdict, ())
                 for p in rule.ports if not p.name]
                + [(rule.direction, int(p.protocol), p.port_lo, p.port_hi, rule.verdict,
                    item.http) for item in rule.l7 for p in item.ports if not p.name],
                0 if rule.direction is Direction.INGRESS else 1,
                [(rule.direction, int(p.protocol), p.name, rule.verdict, ())
                 for p in rule.ports if p.name]
                + [(rule.direction, int(p.protocol), p.name, rule.verdict, item.http)
                   for item in rule.l7 for p in item.ports if p.name],
            )
            state.bucket = rule.requirement_bucket
            for peer in state.peers[:rule.endpoint_peers]:
                if peer is None:
                    state.constrained_wildcard = True
                else:
                    state.constrained.add(peer)
            self._rules[rule.ref] = state
            self._subject_users.setdefault(state.subject, set()).add(state)
            for peer in state.peers:
                if peer is not None:
                    users = self._peer_users.setdefault(peer, {})
                    users[state] = users.get(state, 0) + 1
            for subject in state.subject.matches:
                if subject in self._endpoints:
                    self._contribute(state, subject, 1, changed)
        return changed

    def remove_rules(self, refs: Iterable[RuleRef]) -> set[int]:
        """Removes rules; returns the identities whose resolved policy changed."""
        changed: set[int] = set()
        for ref in refs:
            state = self._rules.pop(ref)
            for subject in state.subject.matches:
                if subject in self._endpoints:
                    self._contribute(state, subject, -1, changed)
            users = self._subject_users[state.subject]
            users.discard(state)
            if not users:
                del self._subject_users[state.subject]
            self.cache.release(state.subject)
            for peer in state.peers:
                if peer is not None:
                    peer_users = self._peer_users[peer]
                    peer_users[state] -= 1
                    if not peer_users[state]:
                        del peer_users[state]
                    if not peer_users:
                        del self._peer_users[peer]
                    self.cache.release(peer)
        return changed

    # -- results -------------------------------------------------------------------------
    def endpoints(self) -> set[int]:
        return set(self._endpoints)

    def entry_count(self, identity: int) -> int:
        subject = self._subjects.get(identity)
        if subject is None:
            return 0
        entries, extra = subject.entries, 0
        for entry, n in subject.l7.items():  # several contributions, one policy-map entry
            extra += n - (0 if (*entry, ()) in entries else 1)
        return len(entries) - extra

    def resolved(self, identity: int, *, origins: bool = False) -> ResolvedPolicy:
        subject = self._subjects.get(identity)
        if subject is None:
            return ResolvedPolicy(identity)
        if not subject.l7 and not origins:  # no L7 rule: nothing to fold (the hot path)
            entries = tuple(Entry(*key) for key in sorted(subject.entries))
            return ResolvedPolicy(identity, subject.enforced[0] > 0, subject.enforced[1] > 0,
                                  entries, dns=tuple(sorted(subject.dns)))
        refs = self._origins(identity, subject) if origins else None
        entries, found = merge(subject.entries, refs)
        return ResolvedPolicy(identity, subject.enforced[0] > 0, subject.enforced[1] > 0,
                              entries, found, tuple(sorted(subject.dns)))

    def enforcement(self, identity: int) -> tuple[bool, bool]:
        """(ingress enforced, egress enforced) of `identity`, without building its entries."""
        subject = self._subjects.get(identity)
        if subject is None:
            return False, False
        return subject.enforced[0] > 0, subject.enforced[1] > 0

    # -- internals -----------------------------------------------------------------------
    def _contribute(self, state: _RuleState, identity: int, sign: int,
                    changed: set[int]) -> None:
        """Adds (sign 1) or removes (-1) everything `state` gives the subject `identity`;
        adds `identity` to `changed` when its policy changed."""
        subject = self._subjects.get(identity)
        if subject is None:
            subject = self._subjects[identity] = _Subject()
        if sign > 0:
            subject.rules.add(state)
        else:
            subject.rules.discard(state)
        count = subject.enforced[state.direction_index]
        subject.enforced[state.direction_index] = count + sign
        if count == 0 or count + sign == 0:
            changed.add(identity)
        for item in state.rule.dns:
            for pattern in item.patterns:
                adjust(subject.dns, pattern, sign)
            changed.add(identity)
        if state.rule.requires:
            # The bucket's requirements change: its rules' peers are decided again.
            others = [s for s in subject.rules if s.bucket == state.bucket and s is not state]
            if sign < 0:
                self._entries(state, identity, subject, -1, changed)
            for other in others:
                self._entries(other, identity, subject, -1, changed)
            bucket = subject.requires[state.bucket]
            for selector in state.rule.requires:
                adjust(bucket, selector, sign)
            if any(subject.requires):
                self._required.add(identity)
            else:
                self._required.discard(identity)
            for other in others:
                self._entries(other, identity, subject, 1, changed)
            if sign > 0:
                self._entries(state, identity, subject, 1, changed)
        else:
            self._entries(state, identity, subject, sign, changed)
        if not subject.rules:
            del self._subjects[identity]
            self._required.discard(identity)

    def _peer_ids(self, state: _RuleState, subject: _Subject) -> list[int]:
        """The entry peers `state` gives `subject` (0 = any), requirements applied."""
        required = bool(subject.requires[state.bucket])
        found: list[int] = []
        for peer in state.peers:
            if peer is None:
                if state.constrained_wildcard and required:
                    found.extend(i for i, labels in self.index.labels.items()
                                 if subject.admits(state, labels))
                else:
                    found.append(0)
            elif required and peer in state.constrained:
                labels_of = self.index.labels
                found.extend(i for i in peer.matches if subject.admits(state, labels_of[i]))
            else:
                found.extend(peer.matches)
        return found

    def _templates(self, state: _RuleState, identity: int) -> list[_Template]:
        """`state`'s port templates for subject `identity`, named ports resolved."""
        if not state.named:
            return state.templates
        found = list(state.templates)
        for direction, proto, name, verdict, http in state.named:
            if direction is Direction.INGRESS:
                pairs: Iterable[tuple[int, int]] = self.named.get(identity, {}).get(name, ())
            else:
                pairs = self._named_all.get(name, {})
            found.extend((direction, p, n, n, verdict, http) for p, n in sorted(pairs)
                         if proto in (0, p))
        return found

    def set_named_ports(self, identity: int, named: NamedPorts) -> set[int]:
        """The named ports of an identity's endpoints changed; returns the identities whose
        policy changed (subjects of rules with named ports: ingress ones of `identity`,
        egress ones of every subject, since egress resolves against every endpoint)."""
        old = self.named.get(identity, {})
        if old == named:
            return set()
        changed: set[int] = set()
        affected = [(state, subject) for state in self._rules.values() if state.named
                    for subject in state.subject.matches if subject in self._endpoints
                    and (state.direction_index == 1 or subject == identity)]
        for state, subject in affected:
            self._entries(state, subject, self._subjects[subject], -1, changed)
        for sign, ports in ((-1, old), (1, named)):
            for name, pairs in ports.items():
                counts = self._named_all.setdefault(name, {})
                for pair in pairs:
                    adjust(counts, pair, sign)
                if not counts:
                    del self._named_all[name]
        if named:
            self.named[identity] = named
        else:
            self.named.pop(identity, None)
        for state, subject in affected:
            self._entries(state, subject, self._subjects[subject], 1, changed)
        return changed

    def _entries(self, state: _RuleState, identity: int, subject: _Subject, sign: int,
                 changed: set[int]) -> None:
        entries = subject.entries
        touched = False
        templates = self._templates(state, identity) if state.named else state.templates
        groups: list[Iterable[int]]
        if subject.requires[state.bucket]:
            groups = [self._peer_ids(state, subject)]
        else:  # the hot path: no requirement filters any peer
            groups = [(0,) if peer is None else peer.matches for peer in state.peers]
        for group in groups:
            for peer_id in group:
                for direction, proto, lo, hi, verdict, http in templates:
                    key = (direction, peer_id, proto, lo, hi, verdict, http)
                    n = entries.get(key, 0) + sign
                    if n:
                        entries[key] = n
                        if n == sign:
                            touched = True
                            if http:
                                _count_l7(subject.l7, key, 1)
                    else:
                        del entries[key]
                        touched = True
                        if http:
                            _count_l7(subject.l7, key, -1)
        if touched:
            changed.add(identity)

    def _add_peer(self, subject: _Subject, identity: int, state: _RuleState, peer: int,
                  times: int, changed: set[int]) -> None:
        entries = subject.entries
        templates = self._templates(state, identity) if state.named else state.templates
        for direction, proto, lo, hi, verdict, http in templates:
            key = (direction, peer, proto, lo, hi, verdict, http)
            n = entries.get(key, 0) + times
            if n:
                entries[key] = n
                if n == times:
                    changed.add(identity)
                    if http:
                        _count_l7(subject.l7, key, 1)
            else:
                del entries[key]
                changed.add(identity)
                if http:
                    _count_l7(subject.l7, key, -1)

    def _origins(self, identity: int, subject: _Subject) -> dict[ContributionKey, set[RuleRef]]:
        found: dict[ContributionKey, set[RuleRef]] = {}
        for state in subject.rules:
            templates = self._templates(state, identity)
            for peer_id in self._peer_ids(state, subject):
                for direction, proto, lo, hi, verdict, http in templates:
                    key = (direction, peer_id, proto, lo, hi, verdict, http)
                    found.setdefault(key, set()).add(state.rule.ref)
        return found


def _count_l7(keys: dict[EntryKey, int], key: ContributionKey, sign: int) -> None:
    """An L7 contribution appeared (1) or disappeared (-1): count it under its entry."""
    adjust(keys, key[:6], sign)  # type: ignore[arg-type]
