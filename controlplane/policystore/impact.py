"""What-if over a proposed policy set: connections traced against the stored policies and
against the set as it would be after an apply and some deletes, nothing stored.

The web console replays a cluster's recent flows through it (its impact view), and validates
the YAML being edited with it (no connections). Parsing is Apply's own (same problems at the
same paths), the rules are the resolver's with the proposed policies in place of the stored
ones of the same names (`PolicyResolver.proposed_rules`), and each trace is `PolicyStore.trace`
over those rules, so a what-if agrees with `policy trace` after the apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bulkhead.errors import FieldViolation, Invalid
from controlplane.policy.model import Policy, PolicyKey, Rule

from .store import PolicyStore, TraceResult, display

MAX_CONNECTIONS = 1024
SIDES = ("", "ingress", "egress")


@dataclass(frozen=True)
class Connection:
    src: list[str]
    dst: list[str]
    dport: int
    protocol: str
    http: tuple[str, str, str, list[str]] = ("", "", "", [])
    side: str = ""


@dataclass(frozen=True)
class Impact:
    current: TraceResult
    proposed: TraceResult
    changed: bool


@dataclass(frozen=True)
class ImpactResult:
    impacts: list[Impact]
    policies: list[Policy]


def verdict(result: TraceResult, side: str) -> str:
    """The verdict compared: one side's, or the connection's (both sides)."""
    if side == "ingress":
        return result.trace.ingress.verdict.value
    if side == "egress":
        return result.trace.egress.verdict.value
    return result.trace.verdict.value


class PolicyImpact:
    def __init__(self, store: PolicyStore) -> None:
        self.store = store

    async def trace_proposed(self, text: str, remove: Sequence[PolicyKey],
                             connections: Sequence[Connection]) -> ImpactResult:
        problems = [FieldViolation(f"connections[{i}].side",
                                   f"must be ingress, egress or empty, not {c.side[:20]!r}")
                    for i, c in enumerate(connections) if c.side not in SIDES]
        if len(connections) > MAX_CONNECTIONS:
            problems.append(FieldViolation("connections", f"at most {MAX_CONNECTIONS} in one "
                                                          f"request, not {len(connections)}"))
        problems += [FieldViolation(f"remove[{i}]", f"policy {display(key)} does not exist")
                     for i, key in enumerate(remove) if self.store.resolver.stored(key) is None]
        if problems:
            raise Invalid(problems)
        policies = await self.store._parse(text) if text.strip() else []
        rules = self.store.resolver.proposed_rules(policies, remove)
        return ImpactResult([self._one(i, c, rules) for i, c in enumerate(connections)],
                            policies)

    def _one(self, index: int, conn: Connection, rules: list[Rule]) -> Impact:
        try:
            current = self.store.trace(conn.src, conn.dst, conn.dport, conn.protocol, conn.http)
        except Invalid as exc:  # name the connection the bad field belongs to
            raise Invalid([FieldViolation(f"connections[{index}].{v.field}", v.description)
                           for v in exc.violations]) from None
        proposed = self.store.trace(conn.src, conn.dst, conn.dport, conn.protocol, conn.http,
                                    rules)
        return Impact(current, proposed, verdict(current, conn.side) != verdict(proposed,
                                                                                 conn.side))
