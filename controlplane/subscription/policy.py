"""The narrow view of the policy engine the subscription needs.

The resolver must be a ClusterCache listener registered *before* the subscription state, so
that when the state handles revision R the resolver has applied R too and `take_changed()`
names exactly the identities whose resolved policy changed at R.
"""

from __future__ import annotations

from typing import Any, Protocol

from .content import ResolvedView


class PolicySource(Protocol):
    def entries_for(self, identity: int) -> ResolvedView:
        """Enforcement flags and entries of `identity` (entries duck-type PolicyEntryView)."""
        ...

    def take_changed(self) -> set[int]:
        """Identities whose resolved policy changed since the last call; clears the set."""
        ...


class EnginePolicySource:
    """Adapts `controlplane.policy.engine.Engine`-like objects (`resolved(id)`, `changed`)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def entries_for(self, identity: int) -> ResolvedView:
        resolved = self.engine.resolved(identity)
        return ResolvedView(bool(resolved.ingress_enforced), bool(resolved.egress_enforced),
                            tuple(resolved.entries))

    def take_changed(self) -> set[int]:
        changed = set(self.engine.changed)
        self.engine.changed.clear()
        return changed
