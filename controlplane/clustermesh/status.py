"""What `bulkhead clustermesh status` shows of each remote, read from the local cache: the
connection, the syncer's status record and counts of what is mirrored."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controlplane.records.codec import (
    IdentityRecord,
    MeshStatusRecord,
    RemoteClusterRecord,
    mirrored_kind,
)
from controlplane.store.cache import ClusterCache
from controlplane.store.keys import Keys
from controlplane.subscription import content


def nodes_with_remotes(keys: Keys, cache: ClusterCache, acked: Mapping[str, int]
                       ) -> tuple[int, dict[str, int], int]:
    """(local nodes registered, per remote cluster the local nodes whose agent has its state,
    the local nodes that have every remote's). `acked` is each connected node's acked
    revision. A node has a remote's state when the remote is ready (its syncer finished its
    initial list and is in sync) and the node's agent acked the latest change mirrored of it:
    a remote still listing, or out of sync, is nobody's yet (as Cilium's agents report a
    remote cluster ready only after their initial sync of it)."""
    nodes = [kv.key[len(keys.nodes):] for kv in cache.under(keys.nodes)]
    per_remote: dict[str, int] = {}
    having = {n: True for n in nodes}
    for view in remote_views(keys, cache):
        name = view.remote.name
        latest = max((kv.mod_revision for kv in cache.under(keys.mesh_mirror(name))), default=0)
        has = {n: view.ready and acked.get(n, -1) >= latest for n in nodes}
        per_remote[name] = sum(has.values())
        for n, ok in has.items():
            having[n] = having[n] and ok
    return len(nodes), per_remote, sum(having.values())


@dataclass(frozen=True)
class RemoteView:
    remote: RemoteClusterRecord
    status: MeshStatusRecord
    ready: bool
    nodes: int
    endpoints: int
    identities: int


def remote_views(keys: Keys, cache: ClusterCache) -> list[RemoteView]:
    views = []
    for kv in sorted(cache.under(keys.mesh_remotes), key=lambda kv: kv.key):
        remote = RemoteClusterRecord.of_kv(kv)
        status_kv = cache.items.get(keys.mesh_status(remote.name))
        status = (MeshStatusRecord.of_kv(status_kv) if status_kv is not None
                  else MeshStatusRecord(remote.name))
        counts = {"nodes/": 0, "ipcache/": 0, "identities/id/": 0, "endpoints/": 0,
                  "services/": 0}
        mirror = keys.mesh_mirror(remote.name)
        for item in cache.under(mirror):
            kind = mirrored_kind(item.key[len(mirror):])
            if kind is not None:
                counts[kind] += 1
        # a syncer whose replica died leaves ready=true behind: its leader key is gone then
        led = keys.mesh_leader(remote.name) in cache.items
        views.append(RemoteView(remote, status, status.ready and led, counts["nodes/"],
                                counts["ipcache/"], counts["identities/id/"]))
    return views


def remote_identity_labels(keys: Keys, cache: ClusterCache, ident: int) -> tuple[str, ...] | None:
    """The labels of a connected remote cluster's identity `ident` (its number is in that
    cluster's range, so at most one remote has it); None when no remote has it."""
    for kv in cache.under(keys.mesh_remotes):
        name = kv.key[len(keys.mesh_remotes):]
        found = cache.items.get(f"{keys.mesh_mirror(name)}identities/id/{ident}")
        if found is not None:
            return IdentityRecord.of_kv(found).labels
    return None


def remote_records(keys: Keys, cache: ClusterCache, kind: str) -> list[Any]:
    """Every connected remote cluster's mirrored records of `kind` ("node", "ipcache"), as
    agents get them (a remote node named `<cluster>/<node>`), for the admin lists."""
    classify = content.Classifier(keys)
    return [content.agent_record(found, kv) for kv in cache.under(keys.mesh_mirrors)
            if (found := classify.kind(kv.key)) == kind]
