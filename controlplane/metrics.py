"""Prometheus metrics of a control-plane replica (`--metrics-listen`).

The parts keep plain counters; this collector reads them at scrape time, so the hot paths never
touch a metrics library and each replica (several may share a process in tests) has its own
registry.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from controlplane.app import ControlPlane


class ControlPlaneCollector(Collector):
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def collect(self) -> Iterator[Metric]:
        cp = self.cp
        allocations = CounterMetricFamily("bulkhead_identity_allocations",
                                          "Identity allocations answered, by result",
                                          labels=["result"])
        for result, count in cp.allocator.allocated.items():
            allocations.add_metric([result], count)
        yield allocations
        yield CounterMetricFamily("bulkhead_identity_merged_txns",
                                  "etcd transactions that carried several new identities",
                                  value=cp.allocator.group.batches)
        yield CounterMetricFamily("bulkhead_identity_merged_allocations",
                                  "New identities sent inside such merged transactions",
                                  value=cp.allocator.group.parts)
        yield CounterMetricFamily("bulkhead_identities_collected",
                                  "Identities garbage-collected by this replica",
                                  value=cp.collector.collected)
        objects = GaugeMetricFamily("bulkhead_objects", "Objects in the cluster cache",
                                    labels=["kind"])
        for kind, prefix in (("nodes", cp.keys.nodes), ("endpoints", cp.keys.endpoints),
                             ("ipcache", cp.keys.ipcache)):
            objects.add_metric([kind], sum(1 for _ in cp.cache.under(prefix)))
        objects.add_metric(["identities"], len(cp.identity_index.by_id))
        yield objects
        yield GaugeMetricFamily("bulkhead_cache_revision", "etcd revision the replica has seen",
                                value=cp.cache.revision)
        fanout = getattr(cp, "subscriptions", None)
        if fanout is not None:
            yield CounterMetricFamily("bulkhead_subscription_deltas_sent",
                                      "Deltas (one per etcd revision) published to subscribers",
                                      value=fanout.hub.deltas)
            yield CounterMetricFamily("bulkhead_subscriber_resets",
                                      "Subscribers reset for falling behind",
                                      value=fanout.hub.resets)
            yield GaugeMetricFamily("bulkhead_subscribers", "Agents streaming from this replica",
                                    value=len(fanout.hub.subscribers))
            lag = GaugeMetricFamily("bulkhead_subscriber_lag_revisions",
                                    "Revisions between the cluster and a node's last ack",
                                    labels=["node"])
            for name, status in fanout.statuses().items():
                if status.connected:
                    lag.add_metric([name], status.lag_revisions)
            yield lag
        engine = getattr(cp, "policy_engine", None)
        timing = getattr(engine, "resolution_seconds", None)
        if timing is not None:
            total, count = timing
            yield CounterMetricFamily("bulkhead_policy_resolution_seconds",
                                      "Time spent resolving policy (sum)", value=total)
            yield CounterMetricFamily("bulkhead_policy_resolutions",
                                      "Policy resolutions (policy or identity changes)",
                                      value=count)


def serve(cp: ControlPlane, listen: str) -> WSGIServer:
    """Serves /metrics on HOST:PORT in a background thread; `shutdown()` stops it."""
    registry = CollectorRegistry()
    registry.register(ControlPlaneCollector(cp))
    host, _, port = listen.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
    return server
