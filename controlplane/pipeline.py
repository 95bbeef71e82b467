"""What a replica derives from each etcd revision, stage by stage, in one place.

The cluster cache hands every revision to one listener, this pipeline, which runs the stages
in the order their inputs require: identities first (policy resolution reads them), then the
services' backends, then policy resolution (which reads the services for `toServices` rules
and re-resolves those whose services changed), then the nodes' host policies (which read the
resolved rules and identities and the nodes' labels), whose results (the services whose
content or backends changed, the identities whose resolved policy changed, the nodes whose
host policy changed) the subscription receives as arguments, then the views that only read
the revision. A new stage is one line
in `reset` and one in `apply`, at the place its inputs are ready.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from typing import Protocol

from controlplane.store.cache import Change, Listener
from controlplane.store.etcd import KV


class PolicyStage(Protocol):
    """Resolves policies; `apply` returns the identities whose resolved policy changed.
    `services_changed` (the service stage's answer) lets `toServices` rules follow services."""

    def reset(self, items: dict[str, KV], revision: int) -> None: ...

    def apply(self, revision: int, changes: list[Change],
              services_changed: Set[str] = ...) -> Set[int]: ...


class ServiceStage(Protocol):
    """Derives service backends; `apply` returns the services whose content or backends
    changed ("namespace/name")."""

    def reset(self, items: dict[str, KV], revision: int) -> None: ...

    def apply(self, revision: int, changes: list[Change]) -> Set[str]: ...


class HostStage(Protocol):
    """Resolves every node's host policy; `apply` returns the nodes whose host policy
    changed (read after the policy stage: host rules and identities are its)."""

    def reset(self, items: dict[str, KV], revision: int) -> None: ...

    def apply(self, revision: int, changes: list[Change]) -> Set[str]: ...


class SubscriptionStage(Protocol):
    """Turns each revision (and the policy changes resolved at it) into what agents receive."""

    def reset(self, items: dict[str, KV], revision: int) -> None: ...

    def apply(self, revision: int, changes: list[Change], policy_changed: Set[int],
              services_changed: Set[str] = ..., hosts_changed: Set[str] = ...) -> None: ...

    def progress(self, revision: int) -> None: ...


class RevisionPipeline:
    """The one ClusterCache listener of a replica."""

    def __init__(self, identities: Listener, policy: PolicyStage,
                 subscription: SubscriptionStage, *, services: ServiceStage | None = None,
                 hosts: HostStage | None = None, views: Sequence[Listener] = ()) -> None:
        self.identities = identities
        self.services = services
        self.policy = policy
        self.hosts = hosts
        self.subscription = subscription
        self.views = list(views)
        """Stages nothing else reads within a revision (the flow enricher)."""

    def reset(self, items: dict[str, KV], revision: int) -> None:
        """A relist: every stage rebuilds, in the same order as `apply`."""
        self.identities.reset(items, revision)
        if self.services is not None:
            self.services.reset(items, revision)
        self.policy.reset(items, revision)
        if self.hosts is not None:
            self.hosts.reset(items, revision)
        self.subscription.reset(items, revision)
        for view in self.views:
            view.reset(items, revision)

    def apply(self, revision: int, changes: list[Change]) -> None:
        if not changes:  # etcd progress only: nothing to derive, the revision advances
            self.subscription.progress(revision)
            return
        self.identities.apply(revision, changes)
        services_changed = (self.services.apply(revision, changes)
                            if self.services is not None else frozenset())
        policy_changed = self.policy.apply(revision, changes, services_changed)
        hosts_changed = (self.hosts.apply(revision, changes)
                         if self.hosts is not None else frozenset())
        self.subscription.apply(revision, changes, policy_changed, services_changed,
                                hosts_changed)
        for view in self.views:
            view.apply(revision, changes)
