"""Where a change's time goes between the writer and an agent, and whether a run counts.

Joins four clocks (all `time.time()` on one machine): the writer's send, the replica's trace
(bench/fanout_trace.py: watch, hub queue, stream write taken / accepted by gRPC),
and the agent's receive and apply. A percentile of the end-to-end latency alone cannot say
which stage to fix; the mean of each stage over the changes at or above the end-to-end p99 can.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from stats import pct

STAGES = [
    ("etcd -> replica watch", "commit and watch delivery to the replica's state"),
    ("watch -> hub queued", "state diff, framing, queueing for every subscriber"),
    ("queued -> send taken", "flush linger plus the sender task being scheduled"),
    ("send taken -> gRPC accepted", "context.write: flow control and the server's loop"),
    ("accepted -> agent received", "transport plus the agent process's loop"),
    ("received -> applied", "the agent's own handling"),
]


def summary(values: list[float]) -> list[float]:
    """p50, p99, max in ms."""
    return [pct(values, 0.50) * 1e3, pct(values, 0.99) * 1e3, max(values, default=0.0) * 1e3]


@dataclass
class Stages:
    samples: list[list[float]] = field(default_factory=lambda: [[] for _ in STAGES])
    totals: list[float] = field(default_factory=list)
    rows: list[tuple[float, list[float]]] = field(default_factory=list)
    unmatched: int = 0

    def tail(self, q: float = 0.99) -> list[float]:
        """Mean ms per stage over the changes whose end-to-end latency is >= its q-quantile."""
        cut = pct(self.totals, q)
        tail = [parts for total, parts in self.rows if total >= cut]
        if not tail:
            return [float("nan")] * len(STAGES)
        return [sum(parts[i] for parts in tail) / len(tail) * 1e3 for i in range(len(STAGES))]


def writes_by_node(writes: list[list[Any]]) -> dict[str, tuple[list[int], list[list[Any]]]]:
    """node -> (last revisions, writes) sorted by last revision, for bisecting."""
    per: dict[str, list[list[Any]]] = {}
    for w in writes:
        per.setdefault(w[0], []).append(w)
    out = {}
    for node, rows in per.items():
        rows.sort(key=lambda w: w[2])
        out[node] = ([w[2] for w in rows], rows)
    return out


def decompose(sent_at: dict[int, float], trace: dict[str, Any],
              agents: list[dict[str, Any]]) -> Stages:
    """`sent_at`: revision -> writer send time; `agents`: [{node, deltas: {rev: [recv, app]}}]."""
    watched = {int(k): v for k, v in trace.get("watched", {}).items()}
    queued = {int(k): v for k, v in trace.get("queued", {}).items()}
    writes = writes_by_node(trace.get("writes", []))
    stages = Stages()
    for agent in agents:
        lasts, rows = writes.get(agent["node"], ([], []))
        for rev_s, (received, applied) in agent["deltas"].items():
            rev = int(rev_s)
            sent = sent_at.get(rev)
            if sent is None:
                continue
            i = bisect.bisect_left(lasts, rev)
            if i == len(rows) or rows[i][1] > rev or rev not in watched or rev not in queued:
                stages.unmatched += 1
                continue
            _, _, _, taken, done = rows[i]
            parts = [watched[rev] - sent, queued[rev] - watched[rev], taken - queued[rev],
                     done - taken, received - done, applied - received]
            for bucket, value in zip(stages.samples, parts, strict=True):
                bucket.append(value)
            stages.totals.append(applied - sent)
            stages.rows.append((applied - sent, parts))
    return stages


def print_stages(stages: Stages) -> None:
    tail = stages.tail()
    owner = max(range(len(STAGES)), key=lambda i: tail[i]) if stages.rows else -1
    print(f"  per stage ({len(stages.totals)} change x agent pairs, {stages.unmatched} "
          f"unmatched)          p50      p99      max   mean in the p99 tail")
    for i, (name, _) in enumerate(STAGES):
        s = summary(stages.samples[i])
        mark = "  <- owns the tail" if i == owner else ""
        print(f"    {name:30s} {s[0]:8.1f} {s[1]:8.1f} {s[2]:8.1f} {tail[i]:8.1f} ms{mark}")


def lag_summary(lags: list[float]) -> str:
    s = summary(lags)
    return f"p50 {s[0]:.1f} / p99 {s[1]:.1f} / max {s[2]:.1f} ms"
