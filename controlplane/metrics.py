"""Prometheus metrics of a control-plane replica (`--metrics-listen`).

The parts keep plain counters; this collector reads them at scrape time, so the hot paths never
touch a metrics library and each replica (several may share a process in tests) has its own
registry. prometheus_client scrapes on its own HTTP thread while the event loop changes the
cache, so the values are read on the loop and only turned into metrics on that thread.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controlplane.clustermesh.status import RemoteView
from controlplane.counts import ObjectCounts
from controlplane.identity.allocator import IdentityAllocator
from controlplane.identity.collector import IdentityCollector
from controlplane.identity.index import IdentityIndex
from controlplane.store.cache import ClusterCache
from controlplane.store.embedded import EmbeddedEtcd
from controlplane.store.groupcommit import GroupCommit
from controlplane.subscription.fanout import Fanout
from controlplane.subscription.hub import Hub

SCRAPE_TIMEOUT = 10.0


@dataclass
class Reading:
    """Everything a scrape reports, read in one event-loop turn."""

    allocations: dict[str, int]
    merged_txns: int
    merged_allocations: int
    collected: int
    label_bytes: tuple[int, int]   # held by all identities, the cluster's quota
    objects: dict[str, int]
    cache_revision: int
    deltas: int
    resets: int
    subscribers: int
    lag: dict[str, int] = field(default_factory=dict)
    resolution: tuple[float, int] = (0.0, 0)
    bad_records: dict[str, int] = field(default_factory=dict)
    embedded: tuple[bool, int] | None = None   # (running, restarts) of an embedded etcd
    clustermesh: list[RemoteView] = field(default_factory=list)


@dataclass(frozen=True)
class Sources:
    """The parts whose counters a scrape reads (controlplane.server wires them)."""

    allocator: IdentityAllocator
    group: GroupCommit
    """the allocator's group commit (merged transactions)"""
    collector: IdentityCollector
    identities: IdentityIndex
    counts: ObjectCounts
    cache: ClusterCache
    subscriptions: Fanout
    hub: Hub
    """the subscriptions' hub (deltas, resets, subscribers)"""
    resolution: Callable[[], tuple[float, int]]
    """(seconds, count) spent resolving policy"""
    embedded: EmbeddedEtcd | None
    clustermesh: Callable[[], list[RemoteView]] = list
    """each connected remote cluster's status (controlplane.clustermesh.status)"""


def read(s: Sources) -> Reading:
    return Reading(
        allocations=dict(s.allocator.allocated),
        merged_txns=s.group.batches,
        merged_allocations=s.group.parts,
        collected=s.collector.collected,
        label_bytes=(s.identities.label_bytes, s.allocator.limits.max_total_label_bytes),
        objects=s.counts(),
        cache_revision=s.cache.revision,
        deltas=s.hub.deltas,
        resets=s.hub.resets,
        subscribers=len(s.hub.subscribers),
        lag={name: status.lag_revisions for name, status in s.subscriptions.statuses().items()
             if status.connected},
        resolution=s.resolution(),
        bad_records=dict(collections.Counter(b.kind for b in s.cache.bad.values())),
        embedded=((s.embedded.ready, s.embedded.restarts)
                  if s.embedded is not None else None),
        clustermesh=s.clustermesh(),
    )


class ControlPlaneCollector(Collector):
    def __init__(self, sources: Sources, loop: asyncio.AbstractEventLoop) -> None:
        self.sources = sources
        self.loop = loop

    def collect(self) -> Iterator[Metric]:
        async def on_loop() -> Reading:
            return read(self.sources)

        r = asyncio.run_coroutine_threadsafe(on_loop(), self.loop).result(SCRAPE_TIMEOUT)
        allocations = CounterMetricFamily("bulkhead_identity_allocations",
                                          "Identity allocations answered, by result",
                                          labels=["result"])
        for result, count in r.allocations.items():
            allocations.add_metric([result], count)
        yield allocations
        yield CounterMetricFamily("bulkhead_identity_merged_txns",
                                  "etcd transactions that carried several new identities",
                                  value=r.merged_txns)
        yield CounterMetricFamily("bulkhead_identity_merged_allocations",
                                  "New identities sent inside such merged transactions",
                                  value=r.merged_allocations)
        yield CounterMetricFamily("bulkhead_identities_collected",
                                  "Identities garbage-collected by this replica",
                                  value=r.collected)
        yield GaugeMetricFamily("bulkhead_identity_label_bytes",
                                "Bytes of labels all identities hold (quota: "
                                "bulkhead_identity_label_bytes_limit)", value=r.label_bytes[0])
        yield GaugeMetricFamily("bulkhead_identity_label_bytes_limit",
                                "--identity-max-total-label-bytes", value=r.label_bytes[1])
        objects = GaugeMetricFamily("bulkhead_objects", "Objects in the cluster cache",
                                    labels=["kind"])
        for kind, count in r.objects.items():
            objects.add_metric([kind], count)
        yield objects
        bad = GaugeMetricFamily("bulkhead_bad_records",
                                "Records in etcd the replica skips because they do not decode "
                                "(their keys are in `bulkhead status`)", labels=["kind"])
        for kind, count in sorted(r.bad_records.items()):
            bad.add_metric([kind], count)
        yield bad
        if r.embedded is not None:
            running, restarts = r.embedded
            yield GaugeMetricFamily("bulkhead_embedded_etcd_up",
                                    "1 while the etcd this replica embeds runs",
                                    value=int(running))
            yield CounterMetricFamily("bulkhead_embedded_etcd_restarts",
                                      "Times the embedded etcd was restarted after it died",
                                      value=restarts)
        yield GaugeMetricFamily("bulkhead_cache_revision", "etcd revision the replica has seen",
                                value=r.cache_revision)
        yield CounterMetricFamily("bulkhead_subscription_deltas_sent",
                                  "Deltas (one per etcd revision) published to subscribers",
                                  value=r.deltas)
        yield CounterMetricFamily("bulkhead_subscriber_resets",
                                  "Subscribers reset for falling behind", value=r.resets)
        yield GaugeMetricFamily("bulkhead_subscribers", "Agents streaming from this replica",
                                value=r.subscribers)
        lag = GaugeMetricFamily("bulkhead_subscriber_lag_revisions",
                                "Revisions between the cluster and a node's last ack",
                                labels=["node"])
        for name, revisions in r.lag.items():
            lag.add_metric([name], revisions)
        yield lag
        yield from _clustermesh(r.clustermesh)
        total, count = r.resolution
        yield CounterMetricFamily("bulkhead_policy_resolution_seconds",
                                  "Time spent resolving policy (sum)", value=total)
        yield CounterMetricFamily("bulkhead_policy_resolutions",
                                  "Policy resolutions (policy or identity changes)",
                                  value=count)


def _clustermesh(views: list[RemoteView]) -> Iterator[Metric]:
    ready = GaugeMetricFamily("bulkhead_clustermesh_remote_ready",
                              "1 while a connected remote cluster is in sync", labels=["cluster"])
    failures = CounterMetricFamily("bulkhead_clustermesh_remote_failures",
                                   "Times a remote cluster's etcd was found unreachable",
                                   labels=["cluster"])
    objects = GaugeMetricFamily("bulkhead_clustermesh_remote_objects",
                                "A remote cluster's objects mirrored into this cluster",
                                labels=["cluster", "kind"])
    revision = GaugeMetricFamily("bulkhead_clustermesh_remote_revision",
                                 "Remote etcd revision mirrored up to", labels=["cluster"])
    for v in views:
        name = v.remote.name
        ready.add_metric([name], int(v.ready))
        failures.add_metric([name], v.status.failures)
        revision.add_metric([name], v.status.revision)
        for kind, count in (("nodes", v.nodes), ("endpoints", v.endpoints),
                            ("identities", v.identities)):
            objects.add_metric([name, kind], count)
    yield from (ready, failures, objects, revision)


def serve(sources: Sources, listen: str) -> WSGIServer:
    """Serves /metrics on HOST:PORT in a background thread; `shutdown()` stops it. Call it
    from the control plane's event loop."""
    registry = CollectorRegistry()
    registry.register(ControlPlaneCollector(sources, asyncio.get_running_loop()))
    host, _, port = listen.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
    return server
