"""`bulkhead status`: this replica, etcd's health and revision, and what the cluster holds."""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from bulkhead.v1 import admin_pb2
from controlplane.counts import object_counts
from controlplane.records import messages
from controlplane.store.etcd import EtcdUnavailable

if TYPE_CHECKING:
    from controlplane.app import ControlPlane

BAD_RECORDS_SHOWN = 100
"""Bad records listed in a status answer (the first by key); counts["bad_records"] has all."""


class StatusReporter:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    async def report(self) -> admin_pb2.StatusResponse:
        cp = self.cp
        etcd = admin_pb2.EtcdStatus(endpoints=",".join(cp.etcd.endpoints))
        try:
            status = await cp.etcd.status()
            etcd.healthy = True
            etcd.revision = status.revision
            etcd.version = status.version
            etcd.cluster_id = status.cluster_id
        except EtcdUnavailable as exc:
            etcd.error = str(exc)
        counts = {**object_counts(cp), "cache_revision": cp.cache.revision,
                  "policies": len(cp.policy_engine.stored)}
        connected = [s for s in cp.subscriptions.statuses().values() if s.connected]
        counts["subscribers"] = len(connected)
        counts["max_lag_revisions"] = max((s.lag_revisions for s in connected), default=0)
        counts["bad_records"] = len(cp.cache.bad)
        bad = [messages.bad_record(b) for b in heapq.nsmallest(
            BAD_RECORDS_SHOWN, cp.cache.bad.values(), key=lambda b: b.key)]
        response = admin_pb2.StatusResponse(
            replica_id=cp.config.replica_id, version=cp.version,
            cluster_name=cp.config.cluster_name, cluster_id=cp.config.cluster_id, etcd=etcd,
            counts=counts, replicas=cp.presence.replicas(), bad_records=bad)
        if cp.embedded is not None:
            pid = cp.embedded.pid
            response.embedded_etcd.CopyFrom(admin_pb2.EmbeddedEtcd(
                running=cp.embedded.ready, pid=pid or 0, restarts=cp.embedded.restarts,
                last_exit=cp.embedded.last_exit, data_dir=str(cp.embedded.data_dir)))
        return response
