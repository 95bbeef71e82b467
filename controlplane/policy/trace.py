"""Policy trace: would a connection from one label set to another on a port be allowed?

Evaluated straight from the rules against label sets (which need not belong to any identity),
with the same selector semantics as resolution, so a trace between existing identities agrees
with their resolved entries (a property test checks that). A connection needs both the egress
side of the source and the ingress side of the destination to allow it; replies of an allowed
connection pass through connection tracking and need no rule.

Requirements (`fromRequires`/`toRequires`): the requirement selectors of every rule that
selects the endpoint on a side must all match a peer that an endpoint selector admits, in
every rule of that side and verdict, as resolution applies them.

L7: when the rules that allow a connection on a side are all L7 items (no plain L3/L4 allow
covers the port), that side's proxy checks each request against their HTTP rules. Given a
request, the side's answer comes from `bulkhead.httprules` over the same sorted union of rules
the resolved entry carries (the proxy's own question); without one, the side lists the rules.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from bulkhead.errors import FieldViolation, shown
from bulkhead.httprules import HttpPolicy, HttpRequest, HttpRule
from controlplane.policy.labels import ParsedLabels
from controlplane.policy.model import NO_NAMED_PORTS, Direction, NamedPorts, Rule, RuleRef, Verdict

DEFAULT_ALLOW = "default-allow"
DEFAULT_DENY = "default-deny"
NO_HTTP_RULE = "no HTTP rule allows the request"
CHECKED_BY_HTTP = "requests checked by HTTP rules"


class TraceVerdict(StrEnum):
    ALLOWED = "ALLOWED"
    DENIED = "DENIED"


@dataclass(frozen=True, order=True)
class HttpRuleRef:
    """One item of a `rules.http` list and where it is (`toPorts[0].rules.http[1]`)."""

    ref: RuleRef
    path: str
    rule: HttpRule

    def __str__(self) -> str:
        return f"{self.ref}.{self.path}"


@dataclass(frozen=True)
class SideTrace:
    """The verdict of one side; `decided_by` is the rule, or None for a default.

    `http_rules` non-empty: the connection is allowed only through L7 items, whose rules are
    listed; `http_decided_by` is the item that allowed the traced request (None: no request
    given, or denied because no item allows it). `enforced_by`: the rules of this direction
    that select the endpoint (what put it under enforcement: the ones to name for a default
    deny)."""

    verdict: TraceVerdict
    enforced: bool
    decided_by: RuleRef | None
    http_rules: tuple[HttpRuleRef, ...] = ()
    http_decided_by: HttpRuleRef | None = None
    http_checked: bool = False
    enforced_by: tuple[RuleRef, ...] = ()

    @property
    def reason(self) -> str:
        """`<policy> <rule>`, `default-allow` (not selected) or `default-deny` (no rule allows);
        for L7: `<policy> <rule>.toPorts[i].rules.http[j]`, `no HTTP rule allows the request`
        or `requests checked by HTTP rules`."""
        if self.http_rules:
            if self.http_decided_by is not None:
                return str(self.http_decided_by)
            return NO_HTTP_RULE if self.http_checked else CHECKED_BY_HTTP
        if self.decided_by is not None:
            return str(self.decided_by)
        return DEFAULT_DENY if self.enforced else DEFAULT_ALLOW


@dataclass(frozen=True)
class Trace:
    verdict: TraceVerdict
    egress: SideTrace
    ingress: SideTrace


def trace(rules: Iterable[Rule], source: Iterable[str], destination: Iterable[str],
          port: int, protocol: int, request: HttpRequest | None = None,
          named: tuple[NamedPorts, NamedPorts] = (NO_NAMED_PORTS, NO_NAMED_PORTS)) -> Trace:
    """Verdict for a connection from `source` labels to `destination` labels on port/protocol;
    with `request`, for that HTTP request on it (both sides' proxies check it). `named`: the
    destination's named ports and every endpoint's, what port names resolve against on the
    ingress and the egress side (as resolution does)."""
    src, dst = ParsedLabels.of(source), ParsedLabels.of(destination)
    rules = list(rules)
    egress = _side(rules, Direction.EGRESS, subject=src, peer=dst, port=port, protocol=protocol,
                   request=request, named=named[1])
    ingress = _side(rules, Direction.INGRESS, subject=dst, peer=src, port=port,
                    protocol=protocol, request=request, named=named[0])
    both = egress.verdict is TraceVerdict.ALLOWED and ingress.verdict is TraceVerdict.ALLOWED
    return Trace(TraceVerdict.ALLOWED if both else TraceVerdict.DENIED, egress, ingress)


def _side(rules: list[Rule], direction: Direction, *, subject: ParsedLabels, peer: ParsedLabels,
          port: int, protocol: int, request: HttpRequest | None,
          named: NamedPorts) -> SideTrace:
    selecting = sorted((r for r in rules if r.direction is direction and r.selects(subject)),
                       key=lambda r: r.ref)
    if not selecting:
        return SideTrace(TraceVerdict.ALLOWED, False, None)
    enforcing = tuple(r.ref for r in selecting)
    # fromRequires/toRequires of every selecting rule constrain the endpoint-selector peers of
    # every rule of the same verdict (Cilium gathers allow and deny requirements apart).
    requires = {v: [sel for r in selecting if r.verdict is v for sel in r.requires]
                for v in Verdict}
    for rule in selecting:
        if (rule.verdict is Verdict.DENY and rule.port_matches(protocol, port, named)
                and rule.peer_matches(peer, requires[Verdict.DENY])):
            return SideTrace(TraceVerdict.DENIED, True, rule.ref, enforced_by=enforcing)
    allowing = [r for r in selecting if r.verdict is Verdict.ALLOW
                and r.port_matches(protocol, port, named)
                and r.peer_matches(peer, requires[Verdict.ALLOW])]
    if not allowing:
        return SideTrace(TraceVerdict.DENIED, True, None, enforced_by=enforcing)
    for rule in allowing:
        if rule.plain_port_matches(protocol, port, named):  # L3/L4 passes every request
            return SideTrace(TraceVerdict.ALLOWED, True, rule.ref, enforced_by=enforcing)
    items = tuple(HttpRuleRef(r.ref, f"{item.path}.rules.http[{i}]", http)
                  for r in allowing for item in r.l7_items(protocol, port, named)
                  for i, http in enumerate(item.http))
    first = allowing[0].ref
    if request is None:
        return SideTrace(TraceVerdict.ALLOWED, True, first, items, enforced_by=enforcing)
    # The entry's rules: the sorted union (l7merge), checked as the proxy checks them.
    union = sorted({item.rule for item in items})
    verdict = HttpPolicy(union).check(copy.deepcopy(request))
    if not verdict.allowed or verdict.rule is None:
        return SideTrace(TraceVerdict.DENIED, True, None, items, None, True, enforcing)
    decided = next(item for item in items if item.rule == union[verdict.rule])
    return SideTrace(TraceVerdict.ALLOWED, True, decided.ref, items, decided, True, enforcing)


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def http_request(method: str, path: str, host: str, headers: Sequence[str]
                 ) -> tuple[HttpRequest | None, list[FieldViolation]]:
    """The HTTP request of a trace (None when no field is given), or what is wrong with it.
    The Host is `host`, else a `Host:` header's value."""
    if not (method or path or host or headers):
        return None, []
    problems = []
    if not method:
        problems.append(FieldViolation("http_method", "is required with the other http fields"))
    elif not _TOKEN.fullmatch(method):
        problems.append(FieldViolation("http_method", f"{shown(method)} is not an HTTP method"))
    if not path:
        problems.append(FieldViolation("http_path", "is required with the other http fields"))
    elif any(c.isspace() for c in path):
        problems.append(FieldViolation("http_path", f"{shown(path)} contains white space"))
    pairs = []
    for i, header in enumerate(headers):
        name, sep, value = header.partition(":")
        if not sep or not _TOKEN.fullmatch(name.strip()):
            problems.append(FieldViolation(f"http_headers[{i}]",
                                           f"{shown(header)} is not 'Name: value'"))
            continue
        pairs.append((name.strip(), value.strip()))
    if problems:
        return None, problems
    if not host:
        host = next((v for k, v in pairs if k.lower() == "host"), "")
    return HttpRequest(method, path, host, pairs), []
