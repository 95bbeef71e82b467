"""Contributions -> entries: how L7 (HTTP) rules combine, the way Cilium combines them.

The engine keeps a multiset of contributions per subject: an entry's fields plus the HTTP rules
of the `toPorts` item that produced it (() for a plain L3/L4 port). This stage, run when a
resolved policy is read, folds them into one entry per (direction, peer, protocol, ports,
verdict):

- no L7 contribution: a plain entry, as before L7 existed;
- some L7 contribution: an L7 entry (`Entry.http`) whose rules are the union of the HTTP rules
  of every allow contribution that covers it — same direction, the same peer or any peer (0),
  a protocol equal or ANY, a port range equal or wider (all ports) — where a plain
  contribution adds `HttpRule()`, which passes every request.

That is Cilium's `wildcardL3L4Rule`: the selectors of L3-only and L4-only allows on a port that
has L7 rules get a wildcard HTTP rule (`http: [{}]`) in that port's L7 filter, so traffic keeps
going through the proxy (its requests are seen as HTTP flows) but every request passes; and in
its Envoy filter a request from a peer passes when any rule whose selector covers the peer
allows it, so an any-peer L7 rule applies to a specific peer's L7 entry too. The datapath picks
the peer's own entry before the any-peer one and the most specific port block first, so the
entry it picks must carry all of that: this fold puts it there.

Deny entries never carry L7 rules (the parser refuses them) and the datapath looks them up
before any allow, so a deny wins before any proxying.

Ranges (L7 rules on port ranges came with Cilium 1.17): an any-peer allow on a range strictly
inside a peer's L7 entry gets a derived entry of that peer on the narrower range (the datapath
would otherwise pick the peer's wider entry there and miss the any-peer rules). Known limits: a
range that only partly overlaps an L7 entry's range is not folded in (that would need ranges
split), and derived entries are not counted by `Engine.entry_count` (the policy-map size
check); both need L7 rules on overlapping ranges, which are rare.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bulkhead.httprules import HttpRule
from controlplane.policy.model import Direction, Entry, RuleRef, Verdict

ContributionKey = tuple[Direction, int, int, int, int, Verdict, tuple[HttpRule, ...]]
"""direction, peer, protocol, port_lo, port_hi, verdict, HTTP rules (() = plain)"""

ALLOW_ALL = HttpRule()
_Key = tuple[Direction, int, int, int, int, Verdict]


def _covers(outer: _Key, inner: _Key) -> bool:
    """`outer`'s protocol and ports include all of `inner`'s (same direction and verdict)."""
    if outer[2] and outer[2] != inner[2]:
        return False
    return (outer[3], outer[4]) == (0, 0) or (outer[3] <= inner[3] and inner[4] <= outer[4])


def merge(contributions: Iterable[ContributionKey],
          origins: Mapping[ContributionKey, set[RuleRef]] | None = None,
          ) -> tuple[tuple[Entry, ...], dict[Entry, tuple[RuleRef, ...]]]:
    """The sorted, unique entries of `contributions`; with `origins` (the rules behind each
    contribution) also the rules behind each entry, those that widened an L7 entry included."""
    rules: dict[_Key, set[HttpRule]] = {}
    by_peer: dict[tuple[Direction, int], list[tuple[_Key, tuple[HttpRule, ...]]]] = {}
    for key in contributions:
        entry, http = key[:6], key[6]
        rules.setdefault(entry, set()).update(http)  # type: ignore[arg-type]
        if key[5] is Verdict.ALLOW:
            by_peer.setdefault((key[0], key[1]), []).append((entry, http))  # type: ignore[arg-type]
    l7 = {entry for entry, http in rules.items() if http}
    for entry in list(l7):
        if entry[1]:
            for derived in _narrower_any_peer(entry, by_peer.get((entry[0], 0), ())):
                if derived not in rules:
                    rules[derived] = set()
                    l7.add(derived)
    direct: dict[_Key, set[RuleRef]] = {}
    if origins is not None:
        for key, behind in origins.items():
            direct.setdefault(key[:6], set()).update(behind)  # type: ignore[arg-type]
    entries: list[Entry] = []
    found: dict[Entry, tuple[RuleRef, ...]] = {}
    for entry in sorted(rules):
        own = rules[entry]
        refs = direct.get(entry, set())
        if entry in l7:
            refs = set(refs)
            for peer in (entry[1], 0) if entry[1] else (0,):
                for other, http in by_peer.get((entry[0], peer), ()):
                    if _covers(other, entry):
                        own.update(http or (ALLOW_ALL,))
                        refs |= direct.get(other, set())
        made = Entry(*entry, http=tuple(sorted(own)))
        entries.append(made)
        if origins is not None:
            found[made] = tuple(sorted(refs))
    return tuple(entries), found


def _narrower_any_peer(entry: _Key, any_peer: Iterable[tuple[_Key, tuple[HttpRule, ...]]]
                       ) -> list[_Key]:
    """Entries a peer's L7 entry needs for the narrower port ranges that any-peer allows cover:
    the datapath picks the peer's wider entry there, which must then carry the any-peer rules
    (or the plain allow's `HttpRule()`) as Cilium's per-port filter would."""
    out = []
    for other, _ in any_peer:
        ports = (other[3], other[4])
        if ports in ((0, 0), (entry[3], entry[4])) or (other[2] and other[2] != entry[2]):
            continue
        if not entry[3] <= other[3] <= other[4] <= entry[4]:
            continue
        out.append((entry[0], entry[1], entry[2], other[3], other[4], Verdict.ALLOW))
    return out
