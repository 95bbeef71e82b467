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

Peers that no L7 rule names keep plain entries (an any-peer L4 allow beside a peer's L7 rule
stays plain for everyone else): Cilium's on-demand wildcarding (cilium/cilium#10054) redirects
only the selectors that have L7 rules on the port, forwarding the others at L3/L4 without the
proxy. The verdicts are the same either way; only the proxy's load and the HTTP flows differ.

Deny entries never carry L7 rules (the parser refuses them) and the datapath looks them up
before any allow, so a deny wins before any proxying.

Ranges (L7 rules on port ranges came with Cilium 1.17): an L7 entry whose range another allow
of the same peer (or of any peer) starts or ends inside is cut there into pieces, each an L7
entry folded as above, so whichever entry the datapath picks for a port carries every rule that
covers that port, as Cilium decides per port. The pieces are not counted by
`Engine.entry_count` (the policy-map size check counts the ranges as the rules give them);
they only occur with L7 rules on overlapping ranges.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import pairwise

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
    for entry in sorted(l7):
        relevant = by_peer.get((entry[0], entry[1]), [])
        if entry[1]:
            relevant = relevant + by_peer.get((entry[0], 0), [])
        pieces = _split(entry, [other for other, _ in relevant])
        if len(pieces) == 1:
            continue
        l7.discard(entry)
        del rules[entry]  # its contributions still reach every piece through the fold
        for piece in pieces:
            rules.setdefault(piece, set())
            l7.add(piece)
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


def _split(entry: _Key, others: Iterable[_Key]) -> list[_Key]:
    """`entry`'s port range cut where another allow's range starts or ends inside it, so each
    piece lies wholly inside or outside every other range (Cilium decides per port; the datapath
    picks one entry per port, which must then carry every rule that covers that port)."""
    lo, hi = entry[3], entry[4]
    cuts = {lo, hi + 1}
    for other in others:
        if (other[3], other[4]) == (0, 0) or (other[2] and other[2] != entry[2]):
            continue
        cuts.update(c for c in (other[3], other[4] + 1) if lo < c <= hi)
    bounds = sorted(cuts)
    return [(*entry[:3], a, b - 1, entry[5]) for a, b in pairwise(bounds)]
