"""Identities by label, and every distinct selector with the identities it currently matches.

Modeled on Cilium's pkg/policy SelectorCache: rules share selectors by value, and a new
identity updates only the match sets of selectors it matches. To find those without testing
every selector, each selector is filed under an anchor (a label or key that every identity it
matches must have); only selectors without any anchor (pure NotIn/DoesNotExist, `cluster`)
are tested against every new identity.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from controlplane.policy.labels import IndexKey, ParsedLabels
from controlplane.policy.selector import Selector


class LabelKeyIndex:
    """Known identities and, per index key, which identities have it (the engine's own; the
    replica's identities from etcd are `controlplane.identity.index.IdentityIndex`)."""

    def __init__(self) -> None:
        self.labels: dict[int, ParsedLabels] = {}
        self._by_key: dict[IndexKey, set[int]] = {}

    def add(self, identity: int, labels: ParsedLabels) -> None:
        self.labels[identity] = labels
        for key in labels.index_keys():
            self._by_key.setdefault(key, set()).add(identity)

    def remove(self, identity: int) -> ParsedLabels:
        labels = self.labels.pop(identity)
        for key in labels.index_keys():
            ids = self._by_key[key]
            ids.discard(identity)
            if not ids:
                del self._by_key[key]
        return labels

    def count(self, anchors: Iterable[IndexKey]) -> int:
        return sum(len(self._by_key.get(a, ())) for a in anchors)

    def candidates(self, anchors: Iterable[IndexKey] | None) -> Iterable[int]:
        if anchors is None:
            return list(self.labels)
        found: set[int] = set()
        for anchor in anchors:
            found |= self._by_key.get(anchor, set())
        return found


@dataclass(eq=False)
class CachedSelector:
    """One distinct selector, shared by every rule that uses it."""

    selector: Selector
    matches: set[int] = field(default_factory=set)
    anchors: tuple[IndexKey, ...] | None = None
    references: int = 0


class SelectorCache:
    def __init__(self, index: LabelKeyIndex) -> None:
        self.index = index
        self._selectors: dict[Selector, CachedSelector] = {}
        self._anchored: dict[IndexKey, list[CachedSelector]] = {}
        self._unanchored: list[CachedSelector] = []

    def __len__(self) -> int:
        return len(self._selectors)

    def acquire(self, selector: Selector) -> CachedSelector:
        cached = self._selectors.get(selector)
        if cached is None:
            cached = CachedSelector(selector, anchors=self._best_anchors(selector))
            labels = self.index.labels
            cached.matches = {i for i in self.index.candidates(cached.anchors)
                              if selector.matches(labels[i])}
            self._selectors[selector] = cached
            if cached.anchors is None:
                self._unanchored.append(cached)
            else:
                for anchor in cached.anchors:
                    self._anchored.setdefault(anchor, []).append(cached)
        cached.references += 1
        return cached

    def release(self, cached: CachedSelector) -> None:
        cached.references -= 1
        if cached.references:
            return
        del self._selectors[cached.selector]
        if cached.anchors is None:
            self._unanchored.remove(cached)
        else:
            for anchor in cached.anchors:
                users = self._anchored[anchor]
                users.remove(cached)
                if not users:
                    del self._anchored[anchor]

    def _candidates(self, labels: ParsedLabels) -> list[CachedSelector]:
        """The selectors that could match `labels`: those anchored on one of its labels, once
        each, and every unanchored one."""
        found: dict[int, CachedSelector] = {}
        for key in labels.index_keys():
            for cached in self._anchored.get(key, ()):
                found[id(cached)] = cached
        return [*found.values(), *self._unanchored]

    def identity_added(self, identity: int, labels: ParsedLabels) -> list[CachedSelector]:
        """Adds `identity` to every selector it matches and returns those selectors."""
        matched = []
        for cached in self._candidates(labels):
            if cached.selector.matches(labels):
                cached.matches.add(identity)
                matched.append(cached)
        return matched

    def identity_removed(self, identity: int) -> list[CachedSelector]:
        """Removes `identity` from every selector that matched it and returns those."""
        labels = self.index.labels[identity]
        matched = []
        for cached in self._candidates(labels):
            if identity in cached.matches:
                cached.matches.discard(identity)
                matched.append(cached)
        return matched

    def _best_anchors(self, selector: Selector) -> tuple[IndexKey, ...] | None:
        """The anchor option with the fewest identities today: fewer false candidates later."""
        options = selector.anchor_options()
        if not options:
            return None
        return min(options, key=self.index.count)

