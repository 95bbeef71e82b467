"""The proxy's rule table: per (endpoint, direction), the allow entries with their HTTP rules.

Cilium's combination rules hold here: the request passes when any entry that matches the
connection's peer and port lets it through, and an entry without L7 rules (an L3/L4 allow for
the same peer and port) lets every request through.  A connection no entry covers gets
nothing: fail closed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bulkhead.httprules import HeaderMatch, HttpPolicy, HttpRequest, HttpRule, Mismatch

INGRESS = "ingress"
EGRESS = "egress"


@dataclass(frozen=True)
class L7Entry:
    """One allow entry of a local endpoint as the proxy sees it; ``http`` None: no L7 rules."""

    endpoint: str  # the local endpoint's IP
    direction: str  # INGRESS | EGRESS
    peer: int  # identity, 0 = any
    port_lo: int = 0
    port_hi: int = 0
    http: tuple[HttpRule, ...] | None = ()
    identity: int = 0  # the local endpoint's own identity (0: not given)

    def covers(self, peer: int, port: int) -> bool:
        hi = self.port_hi or self.port_lo
        ports = (self.port_lo, hi) in ((0, 0), (0, 0xFFFF)) or self.port_lo <= port <= hi
        return self.peer in (0, peer) and ports


def rule_to_json(rule: HttpRule) -> dict[str, Any]:
    return {"method": rule.method, "path": rule.path, "host": rule.host,
            "headers": list(rule.headers),
            "header_matches": [{"name": m.name, "value": m.value, "mismatch": m.mismatch.value}
                               for m in rule.header_matches]}


def rule_from_json(d: dict[str, Any]) -> HttpRule:
    return HttpRule(d.get("method", ""), d.get("path", ""), d.get("host", ""),
                    tuple(d.get("headers", ())),
                    tuple(HeaderMatch(m["name"], m.get("value", ""),
                                      Mismatch(m.get("mismatch", "")))
                          for m in d.get("header_matches", ())))


def entry_to_json(e: L7Entry) -> dict[str, Any]:
    return {"endpoint": e.endpoint, "direction": e.direction, "peer": e.peer,
            "port_lo": e.port_lo, "port_hi": e.port_hi, "identity": e.identity,
            "http": None if e.http is None else [rule_to_json(r) for r in e.http]}


def entry_from_json(d: dict[str, Any]) -> L7Entry:
    if d.get("direction") not in (INGRESS, EGRESS):
        raise ValueError(f"entry direction must be {INGRESS} or {EGRESS}: {d.get('direction')!r}")
    http = d.get("http")
    return L7Entry(str(d["endpoint"]), d["direction"], int(d.get("peer", 0)),
                   int(d.get("port_lo", 0)), int(d.get("port_hi", 0)),
                   None if http is None else tuple(rule_from_json(r) for r in http),
                   int(d.get("identity", 0)))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    why: str  # "rule 0 of 10.1.0.10 ingress peer 301 port 80", "no L7 rules", "no policy"


class RuleTable:
    """Compiled entries; replaced whole by the agent (new requests use the new table)."""

    def __init__(self, entries: Iterable[L7Entry] = ()) -> None:
        self.entries = tuple(entries)
        self._index: dict[tuple[str, str], list[tuple[L7Entry, HttpPolicy | None]]] = {}
        self.identities: dict[str, int] = {}
        for e in self.entries:
            policy = None if e.http is None else HttpPolicy(e.http)
            self._index.setdefault((e.endpoint, e.direction), []).append((e, policy))
            if e.identity:
                self.identities[e.endpoint] = e.identity

    def check_connection(self, endpoint: str, direction: str, peer: int, port: int,
                         server: tuple[str, int], request: HttpRequest) -> Decision:
        """`check`, and for an egress connection to a destination on this node whose ingress
        has L7 rules, those too: the datapath sends such a connection to the proxy once (the
        source's egress redirect wins), and the proxy's upstream leg is not policed again, so
        both sides' rules are checked here (across nodes the destination's node proxies it)."""
        decision = self.check(endpoint, direction, peer, port, request)
        if not decision.allowed or direction != EGRESS \
                or (server[0], INGRESS) not in self._index:
            return decision
        client = self.identities.get(endpoint)
        if client is None:
            return Decision(False, "the client's identity is unknown to the proxy")
        return self.check(server[0], INGRESS, client, server[1], request)

    def check(self, endpoint: str, direction: str, peer: int, port: int,
              request: HttpRequest) -> Decision:
        """Decide one request; header-match actions edit ``request`` (forward it edited)."""
        matching = [(e, p) for e, p in self._index.get((endpoint, direction), ())
                    if e.covers(peer, port)]
        if not matching:
            return Decision(False, "no policy")
        if any(p is None for _, p in matching):
            return Decision(True, "no L7 rules")
        for e, policy in matching:
            assert policy is not None
            verdict = policy.check(request)
            if verdict.allowed:
                rule = "" if verdict.rule is None else f"rule {verdict.rule} "
                return Decision(True, f"{rule}of peer {e.peer} port {e.port_lo}")
        return Decision(False, "no rule matched")
