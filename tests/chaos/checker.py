"""Checks on a recorded history and the state found at the end; each returns the anomalies it
found, in words an operator can follow back to the run's log."""

from __future__ import annotations

from collections import defaultdict

from .history import History


def identities(history: History, final: dict[int, tuple[str, ...]]) -> list[str]:
    """One number per label set and one label set per number, in every answer the API gave
    (identities are not collected during a run) and in what etcd holds at the end."""
    found: list[str] = []
    ids_of: dict[str, set[int]] = defaultdict(set)
    sets_of: dict[int, set[str]] = defaultdict(set)
    for op in history.ops:
        if op.outcome == "ok" and op.kind in ("identity-allocate", "endpoint-create"):
            labels = op.key.partition("|")[2] if op.kind == "endpoint-create" else op.key
            ids_of[labels].add(op.value)
            sets_of[op.value].add(labels)
    for labels, ids in sorted(ids_of.items()):
        if len(ids) > 1:
            found.append(f"label set {labels} was given several identities: {sorted(ids)}")
    for ident, sets in sorted(sets_of.items()):
        if len(sets) > 1:
            found.append(f"identity {ident} was given for several label sets: {sorted(sets)}")
    owners: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for ident, final_labels in final.items():
        owners[final_labels].append(ident)
    for final_labels, held in sorted(owners.items()):
        if len(held) > 1:
            found.append(f"etcd holds identities {sorted(held)} for one label set "
                         f"{final_labels}")
    for labels, ids in ids_of.items():
        stored = owners.get(tuple(sorted(labels.split(","))))
        if stored and set(stored) != ids:
            found.append(f"label set {labels}: the API answered {sorted(ids)}, etcd holds "
                         f"{sorted(stored)}")
    return found


def endpoints(history: History, final: set[str]) -> list[str]:
    """Every acknowledged create is there at the end unless deleted (or maybe deleted) later;
    every acknowledged delete stays done; a refused create left nothing behind; a delete
    answered NOT_FOUND must not follow an acknowledged create (a lost write)."""
    found: list[str] = []
    state: dict[str, str] = {}       # name -> present | absent | either
    for op in sorted(history.ops, key=lambda o: o.start):
        if op.kind not in ("endpoint-create", "endpoint-delete"):
            continue
        name = op.key.partition("|")[0]
        before = state.get(name, "absent")
        if op.kind == "endpoint-create":
            state[name] = {"ok": "present", "unknown": "either"}.get(op.outcome, before)
        elif op.outcome == "ok":
            state[name] = "absent"
        elif op.outcome == "unknown":
            state[name] = "either"
        elif op.detail.startswith("NOT_FOUND"):
            if before == "present":
                found.append(f"endpoint {name}: created (acknowledged), then a delete found "
                             f"nothing: {op.detail}")
            state[name] = "absent"
    for name, expected in sorted(state.items()):
        if expected == "present" and name not in final:
            found.append(f"endpoint {name}: its create was acknowledged and it was never "
                         f"deleted, but it is gone")
        elif expected == "absent" and name in final:
            found.append(f"endpoint {name}: deleted (acknowledged) or never created, but "
                         f"it exists")
    return found


def policy(history: History, present: bool) -> list[str]:
    if not history.toggles:
        return []
    want = history.toggles[-1].state
    if present != want:
        return [f"policy chaos-allow: the last acknowledged change made it "
                f"{'present' if want else 'absent'}, but it is "
                f"{'present' if present else 'absent'}"]
    return []


def probes(history: History, began: float) -> tuple[list[str], int, int]:
    """Every probe outside a convergence window got the verdict of the policy in force:
    (anomalies, probes checked, probes inside windows)."""
    found: list[str] = []
    toggles = sorted(history.toggles, key=lambda t: t.converged)
    checked = skipped = 0
    for probe in history.probes:
        if any(t.start <= probe.end and probe.start <= t.converged for t in toggles):
            skipped += 1
            continue
        in_force = [t for t in toggles if t.converged <= probe.start]
        if not in_force:
            skipped += 1
            continue
        checked += 1
        allowed = in_force[-1].state
        expected = "ok" if allowed else "timeout"
        if probe.result != expected:
            found.append(f"probe from {probe.client} at {probe.start - began:.1f} s: "
                         f"{probe.result}, but the policy in force "
                         f"{'allows' if allowed else 'denies'} it (expected {expected})")
    return found, checked, skipped
