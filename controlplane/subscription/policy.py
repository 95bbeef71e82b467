"""The narrow view of the policy resolver the subscription needs: one identity's entries.

Which identities changed at a revision is not asked here: the revision pipeline hands it to
`SubscriptionState.apply` with the revision's changes.
"""

from __future__ import annotations

from typing import Any, Protocol

from .content import ResolvedView


class PolicySource(Protocol):
    def entries_for(self, identity: int) -> ResolvedView:
        """Enforcement flags and entries of `identity` (entries duck-type PolicyEntryView)."""
        ...


class EnginePolicySource:
    """Adapts objects with `resolved(id)` (the policy resolver) to a `PolicySource`."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def entries_for(self, identity: int) -> ResolvedView:
        resolved = self.engine.resolved(identity)
        return ResolvedView(bool(resolved.ingress_enforced), bool(resolved.egress_enforced),
                            tuple(resolved.entries), tuple(getattr(resolved, "dns", ())))
