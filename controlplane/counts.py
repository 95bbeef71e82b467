"""What the cluster holds, as `bulkhead status` and /metrics both report it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from controlplane.identity.index import IdentityIndex
from controlplane.store.cache import ClusterCache
from controlplane.store.keys import Keys


@dataclass(frozen=True)
class ObjectCounts:
    """Counts from the cluster cache and the identity index, read when called."""

    cache: ClusterCache
    keys: Keys
    identities: IdentityIndex
    services: Callable[[], tuple[int, int]] | None = None
    """(services, backends) from the replica's service index."""

    def __call__(self) -> dict[str, int]:
        cache, keys = self.cache, self.keys
        counts = {
            "identities": len(self.identities.by_id),
            "nodes": sum(1 for _ in cache.under(keys.nodes)),
            "endpoints": sum(1 for _ in cache.under(keys.endpoints)),
            "ipcache": sum(1 for _ in cache.under(keys.ipcache)),
        }
        if self.services is not None:
            counts["services"], counts["service_backends"] = self.services()
        return counts
