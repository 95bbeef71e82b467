"""Policy trace: would a connection from one label set to another on a port be allowed?

Evaluated straight from the rules against label sets (which need not belong to any identity),
with the same selector semantics as resolution, so a trace between existing identities agrees
with their resolved entries (a property test checks that). A connection needs both the egress
side of the source and the ingress side of the destination to allow it; replies of an allowed
connection pass through connection tracking and need no rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from controlplane.policy.labels import ParsedLabels
from controlplane.policy.model import Direction, Rule, RuleRef, Verdict

DEFAULT_ALLOW = "default-allow"
DEFAULT_DENY = "default-deny"


class TraceVerdict(StrEnum):
    ALLOWED = "ALLOWED"
    DENIED = "DENIED"


@dataclass(frozen=True)
class SideTrace:
    """The verdict of one side; `decided_by` is the rule, or None for a default;
    `enforced_by` the rules of this direction that select the endpoint (what put it under
    enforcement: the ones to name for a default deny)."""

    verdict: TraceVerdict
    enforced: bool
    decided_by: RuleRef | None
    enforced_by: tuple[RuleRef, ...] = ()

    @property
    def reason(self) -> str:
        """`<policy> <rule>`, `default-allow` (not selected) or `default-deny` (no rule allows)."""
        if self.decided_by is not None:
            return str(self.decided_by)
        return DEFAULT_DENY if self.enforced else DEFAULT_ALLOW


@dataclass(frozen=True)
class Trace:
    verdict: TraceVerdict
    egress: SideTrace
    ingress: SideTrace


def trace(rules: Iterable[Rule], source: Iterable[str], destination: Iterable[str],
          port: int, protocol: int) -> Trace:
    """Verdict for a connection from `source` labels to `destination` labels on port/protocol."""
    src, dst = ParsedLabels.of(source), ParsedLabels.of(destination)
    rules = list(rules)
    egress = _side(rules, Direction.EGRESS, subject=src, peer=dst, port=port, protocol=protocol)
    ingress = _side(rules, Direction.INGRESS, subject=dst, peer=src, port=port, protocol=protocol)
    both = egress.verdict is TraceVerdict.ALLOWED and ingress.verdict is TraceVerdict.ALLOWED
    return Trace(TraceVerdict.ALLOWED if both else TraceVerdict.DENIED, egress, ingress)


def _side(rules: list[Rule], direction: Direction, *, subject: ParsedLabels, peer: ParsedLabels,
          port: int, protocol: int) -> SideTrace:
    selecting = sorted((r for r in rules if r.direction is direction and r.selects(subject)),
                       key=lambda r: r.ref)
    if not selecting:
        return SideTrace(TraceVerdict.ALLOWED, False, None)
    for verdict, outcome in ((Verdict.DENY, TraceVerdict.DENIED),
                             (Verdict.ALLOW, TraceVerdict.ALLOWED)):
        for rule in selecting:
            if (rule.verdict is verdict and rule.port_matches(protocol, port)
                    and rule.peer_matches(peer)):
                return SideTrace(outcome, True, rule.ref, tuple(r.ref for r in selecting))
    return SideTrace(TraceVerdict.DENIED, True, None, tuple(r.ref for r in selecting))
