"""`bulkhead status`: this replica, etcd's health and revision, and what the cluster holds."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

from bulkhead.v1 import admin_pb2
from controlplane.counts import ObjectCounts
from controlplane.records import messages
from controlplane.replicas import ReplicaPresence
from controlplane.store.cache import ClusterCache
from controlplane.store.embedded import EmbeddedEtcd
from controlplane.store.etcd import Etcd, EtcdUnavailable
from controlplane.subscription.fanout import Fanout

BAD_RECORDS_SHOWN = 100
"""Bad records listed in a status answer (the first by key); counts["bad_records"] has all."""


@dataclass(frozen=True)
class ReplicaInfo:
    """Who answers: this replica and the cluster it serves."""

    replica_id: str
    version: str
    cluster_name: str
    cluster_id: int


class StatusReporter:
    """Reads the parts it reports on (controlplane.server wires them from the application)."""

    def __init__(self, replica: ReplicaInfo, *, etcd: Etcd, cache: ClusterCache,
                 counts: ObjectCounts, policies: Callable[[], int], subscriptions: Fanout,
                 presence: ReplicaPresence, embedded: EmbeddedEtcd | None) -> None:
        self.replica = replica
        self.etcd = etcd
        self.cache = cache
        self.counts = counts
        self.policies = policies
        self.subscriptions = subscriptions
        self.presence = presence
        self.embedded = embedded

    async def report(self) -> admin_pb2.StatusResponse:
        etcd = admin_pb2.EtcdStatus(endpoints=",".join(self.etcd.endpoints))
        try:
            status = await self.etcd.status()
            etcd.healthy = True
            etcd.revision = status.revision
            etcd.version = status.version
            etcd.cluster_id = status.cluster_id
        except EtcdUnavailable as exc:
            etcd.error = str(exc)
        cache, replica, embedded = self.cache, self.replica, self.embedded
        counts = {**self.counts(), "cache_revision": cache.revision,
                  "policies": self.policies()}
        connected = [s for s in self.subscriptions.statuses().values() if s.connected]
        counts["subscribers"] = len(connected)
        counts["max_lag_revisions"] = max((s.lag_revisions for s in connected), default=0)
        counts["bad_records"] = len(cache.bad)
        bad = [messages.bad_record(b) for b in heapq.nsmallest(
            BAD_RECORDS_SHOWN, cache.bad.values(), key=lambda b: b.key)]
        response = admin_pb2.StatusResponse(
            replica_id=replica.replica_id, version=replica.version,
            cluster_name=replica.cluster_name, cluster_id=replica.cluster_id, etcd=etcd,
            counts=counts, replicas=self.presence.replicas(), bad_records=bad)
        if embedded is not None:
            pid = embedded.pid
            response.embedded_etcd.CopyFrom(admin_pb2.EmbeddedEtcd(
                running=embedded.ready, pid=pid or 0, restarts=embedded.restarts,
                last_exit=embedded.last_exit, data_dir=str(embedded.data_dir)))
        return response
