"""What the cluster holds, as `bulkhead status` and /metrics both report it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controlplane.app import ControlPlane


def object_counts(cp: ControlPlane) -> dict[str, int]:
    cache, keys = cp.cache, cp.keys
    return {
        "identities": len(cp.identity_index.by_id),
        "nodes": sum(1 for _ in cache.under(keys.nodes)),
        "endpoints": sum(1 for _ in cache.under(keys.endpoints)),
        "ipcache": sum(1 for _ in cache.under(keys.ipcache)),
    }
