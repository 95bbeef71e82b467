"""Prometheus metrics of a bpf agent (`bulkhead-agent --metrics-listen HOST:PORT`).

As in the control plane, the agent keeps plain state and one collector reads it at scrape time.
The scrape runs on prometheus' HTTP thread, and bcc is not thread-safe, so the collector never
touches the Datapath: flow counters come from the FlowStore (fed on the event loop), and map
pressure is a snapshot the agent refreshes on its datapath worker (``PressureSnapshot``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sized
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from nodeagent.datapath import Datapath
from nodeagent.flowstore import FlowStore

COUNTED = ("ct",)
"""Maps the programs write: no user-space mirror, so their entries are counted in the kernel."""
UNCOUNTED = ("counters",)
"""Per-CPU map: capacity only (batch reads would need per-CPU value buffers)."""


@dataclass
class PressureSnapshot:
    entries: dict[str, int] = field(default_factory=dict)
    max_entries: dict[str, int] = field(default_factory=dict)
    taken: float = 0.0
    """time.monotonic() of the read; 0 = never."""


def read_pressure(dp: Datapath) -> PressureSnapshot:
    """Datapath thread only: entries per map (mirrors, or a kernel count) and capacities.

    The one reading of map pressure: /metrics (via the snapshot) and AgentStatus both use it.
    """
    entries: dict[str, int] = {}
    for name, raw in dp.loaded.maps.items():
        if name in UNCOUNTED:
            continue
        entries[name] = raw.count() if name in COUNTED else len(raw.entries())
    sizes = {name: raw.max_entries for name, raw in dp.loaded.maps.items()}
    return PressureSnapshot(entries, sizes, time.monotonic())


class AgentCollector(Collector):
    """Reads the flow store, the endpoint count, the applied revision and the latest pressure
    snapshot; nodeagent.agent hands it those."""

    def __init__(self, *, flows: FlowStore, endpoints: Sized,
                 applied_revision: Callable[[], int],
                 pressure: Callable[[], PressureSnapshot],
                 proxy: Callable[[], dict[str, Any] | None] | None = None) -> None:
        self.flows = flows
        self.proxy = proxy
        """The L7 proxy's latest counters (refreshed by the agent's supervision loop; None:
        down or not checked yet), or None without a proxy."""
        self.endpoints = endpoints
        self.applied_revision = applied_revision
        self.pressure = pressure

    def collect(self) -> Iterator[Metric]:
        flows = self.flows
        drops = CounterMetricFamily("bulkhead_drops", "Packets dropped (flow events), by reason",
                                    labels=["reason"])
        for reason, count in sorted(flows.dropped.items()):
            drops.add_metric([reason], count)
        yield drops
        yield CounterMetricFamily("bulkhead_forwarded_flows",
                                  "Policy verdicts that allowed a new connection",
                                  value=flows.forwarded)
        pressure = self.pressure()
        entries = GaugeMetricFamily("bulkhead_map_entries", "Entries in a BPF map",
                                    labels=["map"])
        for name, count in sorted(pressure.entries.items()):
            entries.add_metric([name], count)
        yield entries
        sizes = GaugeMetricFamily("bulkhead_map_max_entries", "Capacity of a BPF map",
                                  labels=["map"])
        for name, count in sorted(pressure.max_entries.items()):
            sizes.add_metric([name], count)
        yield sizes
        if pressure.taken:
            yield GaugeMetricFamily("bulkhead_map_pressure_age_seconds",
                                    "Seconds since the map counts were read",
                                    value=time.monotonic() - pressure.taken)
        yield GaugeMetricFamily("bulkhead_flows_held", "Flows held for the local API",
                                value=len(flows.flows))
        yield GaugeMetricFamily("bulkhead_flows_max", "Flows the agent holds at most",
                                value=flows.capacity)
        yield GaugeMetricFamily("bulkhead_endpoints", "Endpoints on this node",
                                value=len(self.endpoints))
        yield GaugeMetricFamily("bulkhead_applied_revision",
                                "Control-plane revision written into the maps",
                                value=self.applied_revision())
        if self.proxy is not None:
            yield from proxy_metrics(self.proxy())


def proxy_metrics(stats: dict[str, Any] | None) -> Iterator[Metric]:
    """The L7 proxy's counters (they restart at zero with the proxy, as counters may)."""
    yield GaugeMetricFamily("bulkhead_proxy_up", "The L7 proxy answers its control channel",
                            value=1 if stats else 0)
    if not stats:
        return
    requests = CounterMetricFamily("bulkhead_proxy_requests",
                                   "HTTP requests through the L7 proxy, by method, response "
                                   "code and verdict", labels=["method", "code", "verdict"])
    for r in stats["requests"]:
        requests.add_metric([r["method"], str(r["code"]), r["verdict"]], r["count"])
    yield requests
    yield GaugeMetricFamily("bulkhead_proxy_open_connections",
                            "Client connections the L7 proxy holds",
                            value=stats["open_connections"])
    cumulative, buckets = 0, []
    for le, n in zip([*stats["latency_buckets_ms"], None], stats["latency_counts"],
                     strict=True):
        cumulative += n
        buckets.append(("+Inf" if le is None else str(le / 1000), cumulative))
    yield HistogramMetricFamily("bulkhead_proxy_latency_seconds",
                                "Time from a forwarded request's headers to its response's",
                                buckets=buckets, sum_value=stats["latency_sum_ns"] / 1e9)


def serve(collector: AgentCollector, listen: str) -> WSGIServer:
    """Serves /metrics on HOST:PORT (port 0: any) in a background thread; ``shutdown()`` stops
    it and ``server_address`` tells the bound port."""
    registry = CollectorRegistry()
    registry.register(collector)
    host, _, port = listen.rpartition(":")
    server, _thread = start_http_server(int(port), addr=host or "127.0.0.1", registry=registry)
    return server
