"""Memory and lag under steady churn (`make soak`): every `interval` seconds the resident
memory of each control-plane replica and agent, and the subscription's largest lag. The
report fits a line to each process's memory; growth beyond the bound is an anomaly."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from bulkhead.v1 import subscription_pb2, subscription_pb2_grpc

from .system import System

GROWTH_BOUND_MIB = 16.0
"""Allowed growth of a process from the start to the end of a soak (median of the first three
samples to median of the last three): caches fill once, then memory must stay flat."""
LAG_BOUND = 1000
"""Revisions an agent may be behind at a sample while changes flow at the soak's rate."""


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    if len(samples) < 2:
        return 0.0
    xs = [t for t, _ in samples]
    ys = [m for _, m in samples]
    return statistics.linear_regression(xs, ys).slope * 3600


@dataclass
class Soak:
    memory: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    lags: list[int] = field(default_factory=list)

    async def sample(self, system: System, interval: float, say: object = None) -> None:
        while True:
            now = time.time()
            procs = {r.name: r.proc for r in system.lab.replicas}
            procs |= {f"agent {s}": n.proc for s, n in system.lab.nodes.items()}
            for name, proc in procs.items():
                mib = rss_mib(proc.pid) if proc is not None else None
                if mib is not None:
                    self.memory.setdefault(name, []).append((now, mib))
            lag = 0
            for address in system.addresses:
                try:
                    async with grpc.aio.insecure_channel(address) as channel:
                        subs = await subscription_pb2_grpc.SubscriptionAdminServiceStub(
                            channel).ListSubscriptions(
                                subscription_pb2.ListSubscriptionsRequest(), timeout=5)
                    lag = max([lag, *(s.lag_revisions for s in subs.subscriptions
                                      if s.connected)])
                except grpc.aio.AioRpcError:
                    continue
            self.lags.append(lag)
            await asyncio.sleep(interval)

    def lines(self) -> list[str]:
        out = []
        for name, samples in sorted(self.memory.items()):
            first, last = samples[0][1], samples[-1][1]
            out.append(f"memory {name}: {first:.0f} -> {last:.0f} MiB over {len(samples)} "
                       f"samples, slope {slope_per_hour(samples):+.1f} MiB/h")
        if self.lags:
            out.append(f"subscription lag: max {max(self.lags)} revisions over "
                       f"{len(self.lags)} samples")
        return out

    def anomalies(self) -> list[str]:
        found = []
        for name, samples in sorted(self.memory.items()):
            if len(samples) < 6:
                continue
            start = statistics.median(m for _, m in samples[:3])
            end = statistics.median(m for _, m in samples[-3:])
            if end - start > GROWTH_BOUND_MIB:
                found.append(f"memory of {name} grew {end - start:.0f} MiB "
                             f"({start:.0f} -> {end:.0f}), beyond the bound of "
                             f"{GROWTH_BOUND_MIB:.0f} MiB")
        if self.lags and max(self.lags) > LAG_BOUND:
            found.append(f"subscription lag reached {max(self.lags)} revisions (bound "
                         f"{LAG_BOUND})")
        return found
