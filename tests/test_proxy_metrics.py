"""The agent's L7 proxy metrics, from the counters the proxy reports (no process here)."""

from __future__ import annotations

from typing import Any

from nodeagent.metrics import proxy_metrics
from nodeagent.proxy.server import LATENCY_BUCKETS_MS


def samples(stats: dict[str, Any] | None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in proxy_metrics(stats):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_requests_by_method_code_verdict_and_a_latency_histogram() -> None:
    counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    counts[0], counts[2], counts[-1] = 3, 1, 1  # <= 1 ms, <= 5 ms, > 5 s
    got = samples({"requests": [{"method": "POST", "code": 200, "verdict": "FORWARDED",
                                 "count": 5},
                                {"method": "PUT", "code": 403, "verdict": "DROPPED",
                                 "count": 2}],
                   "open_connections": 4, "latency_buckets_ms": list(LATENCY_BUCKETS_MS),
                   "latency_counts": counts, "latency_sum_ns": 6_500_000_000})
    assert got[("bulkhead_proxy_up", ())] == 1
    assert got[("bulkhead_proxy_requests_total",
                (("code", "200"), ("method", "POST"), ("verdict", "FORWARDED")))] == 5
    assert got[("bulkhead_proxy_requests_total",
                (("code", "403"), ("method", "PUT"), ("verdict", "DROPPED")))] == 2
    assert got[("bulkhead_proxy_open_connections", ())] == 4
    assert got[("bulkhead_proxy_latency_seconds_bucket", (("le", "0.001"),))] == 3
    assert got[("bulkhead_proxy_latency_seconds_bucket", (("le", "0.005"),))] == 4
    assert got[("bulkhead_proxy_latency_seconds_bucket", (("le", "+Inf"),))] == 5
    assert got[("bulkhead_proxy_latency_seconds_count", ())] == 5
    assert got[("bulkhead_proxy_latency_seconds_sum", ())] == 6.5


def test_a_proxy_that_is_down_is_only_up_0() -> None:
    assert samples(None) == {("bulkhead_proxy_up", ()): 0}
