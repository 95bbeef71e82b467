"""The report of a connectivity test, in the shape of cilium-cli's: one line per test (✅, ❌
or ⏭️), each failed action with the expected and the seen result and the flows it left, and a
summary line. `-o json` prints the same as one object (README: JSON output)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..commands.observe import as_json, line
from .runner import ActionResult, TestResult
from .scenarios import policy_yaml

MAX_FLOWS = 5


def test_line(result: TestResult, total: int) -> str:
    name = f"[{result.number}/{total}] {result.scenario.name}"
    if result.status == "skipped":
        return f"⏭️  {name}: skipped, {result.reason}"
    failed = [a for a in result.actions if not a.passed]
    actions = len(result.actions)
    if not failed:
        return f"✅ {name} ({actions} action{'s' if actions != 1 else ''})"
    return f"❌ {name} ({len(failed)} of {actions} actions failed)"


def failure_lines(action: ActionResult) -> list[str]:
    a = action.action
    out = [f"    ❌ {a.name}: expected {a.expect}, seen {action.seen}"
           + (f" ({action.detail})" if action.detail and action.detail not in action.seen
              else "")]
    out += [f"       {problem}" for problem in action.problems
            if not problem.startswith("expected ")]
    if action.flows:
        out.append("       flows:")
        out += [f"         {line(f, node_name=True)}" for f in action.flows[-MAX_FLOWS:]]
    else:
        out.append("       flows: none recorded")
    return out


def summary(results: Sequence[TestResult]) -> str:
    ran = [r for r in results if r.status != "skipped"]
    skipped = len(results) - len(ran)
    actions = sum(len(r.actions) for r in ran)
    failed = [r for r in ran if r.status == "failed"]
    if not failed:
        return f"✅ All {len(ran)} tests ({actions} actions) successful, {skipped} skipped"
    bad = sum(1 for r in ran for a in r.actions if not a.passed)
    return (f"❌ {len(failed)} of {len(ran)} tests failed ({bad} of {actions} actions), "
            f"{skipped} skipped: {', '.join(r.scenario.name for r in failed)}")


def action_json(action: ActionResult) -> dict[str, Any]:
    a = action.action
    return {"name": a.name, "source": a.source, "target": a.target, "kind": a.kind,
            "port": a.port, "method": a.method, "path": a.path, "source_ip": action.source_ip,
            "target_ip": action.target_ip, "expected": a.expect, "seen": action.seen,
            "detail": action.detail, "passed": action.passed, "problems": action.problems,
            "flows": [as_json(f) for f in action.flows]}


def as_document(results: Sequence[TestResult], nodes: dict[str, str],
                external_ip: str) -> dict[str, Any]:
    ran = [r for r in results if r.status != "skipped"]
    return {
        "nodes": [nodes[k] for k in sorted(nodes)],
        "tests": [{"name": r.scenario.name, "description": r.scenario.description,
                   "status": r.status, "skip_reason": r.reason,
                   "policies": policy_yaml(r.scenario, external_ip),
                   "actions": [action_json(a) for a in r.actions]} for r in results],
        "summary": {"tests": len(ran), "actions": sum(len(r.actions) for r in ran),
                    "failed": sum(1 for r in ran if r.status == "failed"),
                    "failed_actions": sum(1 for r in ran for a in r.actions if not a.passed),
                    "skipped": len(results) - len(ran),
                    "successful": all(r.status != "failed" for r in results)},
    }
