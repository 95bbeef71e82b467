"""Global services across a clustermesh, with Cilium's annotations:

- `service.cilium.io/global: "true"` on a service of the same namespace and name in several
  clusters: each cluster's service load-balances over the backends of all of them (a cluster
  without the service, or without the annotation, neither gets nor gives backends);
- `service.cilium.io/shared: "false"` on a cluster's global service: its backends stay in
  that cluster (it still gets the others');
- `service.cilium.io/affinity: local|remote|none` on the consuming cluster's service: prefer
  local (or remote) backends while there are any, else take the others; none (the default)
  takes them all.

Remote clusters' services and endpoints come from the clustermesh mirror
(`clustermesh/mirror/<remote>/services/`, `.../endpoints/`); the backends are derived here,
like local ones, never stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controlplane.records.codec import Endpoint, ServiceRecord

GLOBAL = "service.cilium.io/global"
SHARED = "service.cilium.io/shared"
AFFINITY = "service.cilium.io/affinity"
AFFINITIES = ("local", "remote", "none")


def annotation(service: ServiceRecord, key: str) -> str | None:
    for pair in service.annotations:
        k, _, v = pair.partition("=")
        if k == key:
            return v
    return None


def is_global(service: ServiceRecord) -> bool:
    return (annotation(service, GLOBAL) or "").lower() == "true"


def is_shared(service: ServiceRecord) -> bool:
    """A global service's backends go to other clusters unless `shared: "false"`."""
    return is_global(service) and (annotation(service, SHARED) or "true").lower() != "false"


def affinity(service: ServiceRecord) -> str:
    value = (annotation(service, AFFINITY) or "none").lower()
    return value if value in AFFINITIES else "none"


_ALLOWED = {GLOBAL: ("true", "false"), SHARED: ("true", "false"), AFFINITY: AFFINITIES}


def mesh_annotation_problems(annotations: tuple[str, ...]) -> list[tuple[str, str]]:
    """(annotation key, problem) for each clustermesh annotation with a value Cilium would
    not take, so a typo is refused rather than silently meaning "none"."""
    problems = []
    for pair in annotations:
        key, _, value = pair.partition("=")
        allowed = _ALLOWED.get(key)
        if allowed is not None and value.lower() not in allowed:
            problems.append((key, f"{value!r} is not one of {', '.join(allowed)}"))
    return problems


@dataclass(frozen=True, slots=True)
class RemoteBackend:
    """A remote cluster's endpoint backing a global service."""

    cluster: str
    endpoint: Endpoint


@dataclass
class RemoteServices:
    """One remote cluster's mirrored services and endpoints."""

    services: dict[str, ServiceRecord] = field(default_factory=dict)
    """"namespace/name" -> service"""
    endpoints: dict[str, dict[str, Endpoint]] = field(default_factory=dict)
    """namespace -> endpoint key -> endpoint"""


def pick(service: ServiceRecord, local: list[Endpoint],
         remote: list[RemoteBackend]) -> tuple[list[Endpoint], list[RemoteBackend]]:
    """The backends `service` uses, after its affinity."""
    mode = affinity(service)
    if mode == "local" and local:
        return local, []
    if mode == "remote" and remote:
        return [], remote
    return local, remote
