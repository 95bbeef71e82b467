"""Fan-out benchmark: change -> applied on every subscribed agent, against etcd watch delivery.

Simulated agents (in-process `SubscriptionClient`s, several worker processes) subscribe to one
replica; a writer creates and deletes endpoints at a steady rate through the control plane. A
change's clock starts when the writer sends the request; it stops (a) when this process's own
etcd watch sees the revision (the baseline) and (b) when an agent has applied it. Then the
replica is killed and every agent resumes on the second replica: time until all are synced
again, and how many needed a snapshot.

    python bench/fanout.py [--agents 100,1000] [--rate 100] [--duration 15] [--workers 4]

BENCH_CP_ARGS="--subscription-max-linger 0" passes extra flags to both replicas.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc

from bulkhead import log
from bulkhead.v1 import node_pb2, node_pb2_grpc
from bulkhead.v1 import subscription_pb2 as pb
from integration.subscription.cluster import Cluster
from nodeagent.subscription.client import SubscriptionClient

TICKS = os.sysconf("SC_CLK_TCK")
WRITER_NODES = 10


# -- worker process: many simulated agents on one event loop --------------------------------
class BenchClient(SubscriptionClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.synced_at: list[tuple[float, str]] = []

    async def _handle(self, message: pb.ServerMessage, acker: Any) -> bool:
        reached = await super()._handle(message, acker)
        if message.WhichOneof("msg") == "synced":
            self.synced_at.append((time.time(), self.stats.replica))
        return reached


async def worker(args: argparse.Namespace) -> None:
    applied: dict[int, list[float]] = {}

    def on_applied(revision: int, changes: Any, at: float) -> None:
        if changes:
            applied.setdefault(revision, []).append(at)

    addresses = args.addresses.split(",")
    names = [f"bench-{i}" for i in range(args.first, args.first + args.count)]
    # Register first, a few at a time (node-id allocation serializes on etcd anyway).
    channel = grpc.aio.insecure_channel(addresses[0])
    stub = node_pb2_grpc.NodeServiceStub(channel)
    gate = asyncio.Semaphore(4)

    async def register(i: int, name: str) -> None:
        async with gate:
            for _ in range(20):
                try:
                    await stub.Register(node_pb2.RegisterNodeRequest(
                        name=name, underlay_ip=f"172.16.{i // 250}.{i % 250 + 1}"), timeout=10)
                    return
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.1)

    await asyncio.gather(*(register(args.first + k, n) for k, n in enumerate(names)))
    await channel.close()
    clients = [BenchClient(name, addresses, ack_interval=args.ack_interval, register=False,
                           on_applied=on_applied, backoff=(0.2, 2.0)) for name in names]
    for client in clients:
        client._index = 0
    tasks: list[asyncio.Task[None]] = []
    for i in range(0, len(clients), 50):   # connect in waves; registration costs etcd writes
        tasks += [asyncio.create_task(c.run()) for c in clients[i:i + 50]]
        await asyncio.sleep(0.2)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    status = Path(args.out + ".status")
    while not stop.is_set():
        data = {"synced": sum(c.synced.is_set() for c in clients),
                "synced_at": [c.synced_at for c in clients]}
        tmp = status.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(status)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)
    result = {"applied": applied, "synced_at": [c.synced_at for c in clients],
              "stats": [vars(c.stats) for c in clients]}
    Path(args.out).write_text(json.dumps(result))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- coordinator ----------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Workers:
    def __init__(self, cluster: Cluster, addresses: str, agents: int, processes: int,
                 ack_interval: float, tag: str) -> None:
        self.cluster = cluster
        self.procs: list[asyncio.subprocess.Process] = []
        self.outs: list[Path] = []
        self.args = (addresses, agents, processes, ack_interval, tag)

    async def start(self) -> None:
        addresses, agents, processes, ack_interval, tag = self.args
        per = -(-agents // processes)
        for w in range(processes):
            first, count = w * per, min(per, agents - w * per)
            if count <= 0:
                break
            out = self.cluster.dir / f"worker-{tag}-{w}.json"
            self.outs.append(out)
            self.procs.append(await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--worker", "--addresses", addresses,
                "--first", str(first), "--count", str(count), "--out", str(out),
                "--ack-interval", str(ack_interval),
                stderr=(self.cluster.dir / f"worker-{tag}-{w}.log").open("ab")))

    def status(self) -> list[dict[str, Any]]:
        found = []
        for out in self.outs:
            path = Path(str(out) + ".status")
            with contextlib.suppress(FileNotFoundError, ValueError):
                found.append(json.loads(path.read_text()))
        return found

    async def wait_synced(self, agents: int, timeout: float) -> float:
        start = time.time()
        while sum(s["synced"] for s in self.status()) < agents:
            if time.time() - start > timeout:
                raise RuntimeError(f"only {sum(s['synced'] for s in self.status())} of {agents}"
                                   f" agents synced after {timeout:.0f} s")
            await asyncio.sleep(0.25)
        return time.time() - start

    async def finish(self) -> list[dict[str, Any]]:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        results = []
        for proc, out in zip(self.procs, self.outs, strict=True):
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            with contextlib.suppress(FileNotFoundError, ValueError):
                results.append(json.loads(out.read_text()))
        return results

    async def kill(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


async def write_load(cluster: Cluster, address: str, rate: float, duration: float,
                     sent: dict[str, float], tag: str) -> int:
    """Creates endpoints at `rate` changes/s, deleting each one 40 changes later."""
    live: list[str] = []
    tasks: list[asyncio.Task[None]] = []
    ops = int(rate * duration)
    start = time.monotonic()

    async def create(name: str) -> None:
        sent[name + "+"] = time.time()
        node = f"bench-writer-{hash(name) % WRITER_NODES}"
        await cluster.create_endpoint(address, node, name, [f"k8s:app=load{len(name) % 5}"])

    async def delete(name: str) -> None:
        sent[name + "-"] = time.time()
        await cluster.delete_endpoint(address, name)

    for i in range(ops):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(live) >= 40 and i % 2:
            tasks.append(asyncio.create_task(delete(live.pop(0))))
        else:
            name = f"{tag}-{i}"
            live.append(name)
            tasks.append(asyncio.create_task(create(name)))
    await asyncio.gather(*tasks, return_exceptions=True)
    for name in live:
        sent[name + "-"] = time.time()
        with contextlib.suppress(Exception):
            await cluster.delete_endpoint(address, name)
    return ops + len(live)


async def watch_revisions(cluster: Cluster, seen: dict[int, tuple[str, float]]) -> None:
    """The baseline: this process's own etcd watch on endpoint keys."""
    assert cluster.etcd is not None
    prefix = f"/bulkhead/v1/{cluster.cluster_name}/endpoints/default/"
    call = cluster.etcd.watch(prefix, 0, progress_notify=False)
    try:
        async for response in call:
            now = time.time()
            for event in response.events:
                name = event.kv.key.decode()[len(prefix):]
                seen[event.kv.mod_revision] = (name + ("+" if event.type == 0 else "-"), now)
    finally:
        call.cancel()


async def measure(cluster: Cluster, agents: int, args: argparse.Namespace,
                  replica_a: Any, replica_b: Any, failover: bool) -> dict[str, Any]:
    workers = Workers(cluster, f"{replica_a.address},{replica_b.address}", agents,
                      max(1, min(args.workers, agents // 50 or 1)), args.ack_interval,
                      f"n{agents}")
    report: dict[str, Any] = {"agents": agents}
    try:
        await workers.start()
        report["connect_s"] = await workers.wait_synced(agents, timeout=240)
        seen: dict[int, tuple[str, float]] = {}
        sent: dict[str, float] = {}
        watcher = asyncio.create_task(watch_revisions(cluster, seen))
        await asyncio.sleep(0.5)
        cpu0 = cpu_seconds(replica_a.process.pid)
        # Writes go through the other replica: replica a's CPU is then the fan-out's.
        ops = await write_load(cluster, replica_b.address, args.rate, args.duration, sent,
                               f"w{agents}")
        await asyncio.sleep(2.0)   # let the last changes arrive
        cpu = cpu_seconds(replica_a.process.pid) - cpu0
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        if failover:
            report.update(await fail_over(cluster, workers, agents, replica_a))
        results = await workers.finish()
    finally:
        await workers.kill()
    base = [t - sent[name] for name, t in seen.values() if name in sent]
    fanout: list[float] = []
    added: list[float] = []    # what the fan-out adds to etcd's own delivery, per change
    for result in results:
        for rev, times in result["applied"].items():
            entry = seen.get(int(rev))
            if entry is not None and entry[0] in sent:
                fanout += [t - sent[entry[0]] for t in times]
                added += [t - entry[1] for t in times]
    expected = len([1 for name, _ in seen.values() if name in sent]) * agents
    report.update({
        "changes": ops, "deltas": len(base), "applied": len(fanout), "expected": expected,
        "etcd_ms": [pct(base, 50) * 1e3, pct(base, 99) * 1e3, max(base, default=0) * 1e3],
        "fanout_ms": [pct(fanout, 50) * 1e3, pct(fanout, 99) * 1e3,
                      max(fanout, default=0) * 1e3],
        "added_ms": [pct(added, 50) * 1e3, pct(added, 99) * 1e3, max(added, default=0) * 1e3],
        "cpu_ms_per_delta": cpu / max(1, len(base)) * 1e3,
    })
    return report


async def fail_over(cluster: Cluster, workers: Workers, agents: int,
                    replica_a: Any) -> dict[str, Any]:
    killed = time.time()
    cluster.kill(replica_a.name)
    await replica_a.process.wait()
    deadline = killed + 60
    done_at = None
    on_a = 0
    while time.time() < deadline:
        # Agents whose last sync before the kill was on replica a must sync again after it.
        after: list[float | None] = []
        for s in workers.status():
            for client in s["synced_at"]:
                before = [rep for t, rep in client if t <= killed]
                if before and before[-1].startswith("a-"):
                    after.append(min((t for t, _ in client if t > killed), default=None))
        on_a = len(after)
        if all(t is not None for t in after):
            done_at = max((t for t in after if t is not None), default=killed)
            break
        await asyncio.sleep(0.25)
    results = await workers.finish()
    snapshots = sum(1 for r in results for s in r["stats"] if s["snapshots"] > 1)
    resumed = sum(1 for r in results for s in r["stats"] if s["resumes"] >= 1)
    return {"resume_all_s": (done_at - killed) if done_at else float("inf"),
            "resume_snapshots": snapshots, "resumed": resumed, "on_killed": on_a}


async def coordinator(args: argparse.Namespace) -> None:
    log.configure("bench", level="warning")
    counts = [int(n) for n in args.agents.split(",")]
    async with Cluster() as cluster:
        extra = ["--node-ttl", "60", *os.environ.get("BENCH_CP_ARGS", "").split()]
        a = await cluster.start_replica("a", *extra)
        b = await cluster.start_replica("b", *extra)
        for w in range(WRITER_NODES):
            await cluster.register(b.address, f"bench-writer-{w}", f"172.31.0.{w + 1}")
        keep = asyncio.create_task(heartbeat(cluster, b.address))
        reports = []
        try:
            for i, n in enumerate(counts):
                failover = i == len(counts) - 1
                print(f"-- {n} agents ...", flush=True)
                report = await measure(cluster, n, args, a, b, failover)
                reports.append(report)
                print_report(report, args.rate)
        finally:
            keep.cancel()
    last = reports[-1]
    print(f"fanout p99 ms @{last['agents']}: {last['fanout_ms'][1]:.1f}")


async def heartbeat(cluster: Cluster, *addresses: str) -> None:
    while True:
        for address in addresses:
            with contextlib.suppress(Exception):
                stub = node_pb2_grpc.NodeServiceStub(cluster.channel(address))
                for w in range(WRITER_NODES):
                    await stub.Heartbeat(node_pb2.HeartbeatRequest(name=f"bench-writer-{w}"),
                                         timeout=5)
                break
        await asyncio.sleep(10)


def print_report(r: dict[str, Any], rate: float) -> None:
    e, f = r["etcd_ms"], r["fanout_ms"]
    print(f"agents {r['agents']}: connected+synced in {r['connect_s']:.1f} s; "
          f"{r['changes']} changes at {rate:.0f}/s, {r['deltas']} seen by the etcd watch; "
          f"{r['applied']}/{r['expected']} agent applies")
    print(f"  etcd watch delivery     p50 {e[0]:7.1f} ms  p99 {e[1]:7.1f} ms  max {e[2]:7.1f} ms")
    print(f"  change -> agent applied p50 {f[0]:7.1f} ms  p99 {f[1]:7.1f} ms  max {f[2]:7.1f} ms"
          f"  (p99 ratio vs etcd {f[1] / max(e[1], 1e-9):.1f}x)")
    d = r["added_ms"]
    print(f"  after the etcd watch    p50 {d[0]:7.1f} ms  p99 {d[1]:7.1f} ms  max {d[2]:7.1f} ms"
          f"  (what the fan-out adds)")
    print(f"  control-plane CPU per delta: {r['cpu_ms_per_delta']:.2f} ms "
          f"(all {r['agents']} agents)")
    if "resume_all_s" in r:
        print(f"  replica killed: {r['on_killed']} agents were on it; all synced again on the "
              f"other replica in {r['resume_all_s']:.2f} s; resumed {r['resumed']}, "
              f"took a snapshot: {r['resume_snapshots']}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", default="100,1000", help="agent counts, comma-separated")
    p.add_argument("--rate", type=float, default=100.0, help="changes per second")
    p.add_argument("--duration", type=float, default=15.0, help="seconds of writes per count")
    p.add_argument("--workers", type=int, default=4, help="agent processes")
    p.add_argument("--ack-interval", type=float, default=0.5)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--addresses", help=argparse.SUPPRESS)
    p.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        log.configure("bench-agent", level="warning")
        asyncio.run(worker(args))
    else:
        asyncio.run(coordinator(args))


if __name__ == "__main__":
    main()
