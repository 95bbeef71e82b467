"""Fan-out benchmark: change -> applied on every subscribed agent, against etcd watch delivery.

Simulated agents (in-process `SubscriptionClient`s, several worker processes) subscribe to one
replica; a writer creates and deletes endpoints at a steady rate through the control plane. A
change's clock starts when the writer sends the request; it stops (a) when this process's own
etcd watch sees the revision (the baseline) and (b) when an agent has applied it. Then the
replica is killed and every agent resumes on the second replica: time until all are synced
again, and how many needed a snapshot; then a rolling restart's next step (the first replica
back, fresh; the second stopped): every agent moves to the fresh replica, time and snapshots
(target 0: it resumes them from etcd's history).

    python bench/fanout.py [--agents 100,1000] [--rate 100] [--duration 15] [--workers 4]

BENCH_CP_ARGS="--subscription-max-linger 0" passes extra flags to both replicas.

The TLS cost: the replicas above run `--insecure`; then a second cluster runs as shipped (mutual
TLS and authorization, every agent with its own node certificate) for --tls-agents agents
(default: the first count) without the fail-over, and the two are compared (fan-out p50/p99,
control-plane CPU per delta, connect+sync time).
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
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from fanout_stages import decompose, lag_summary, print_stages, summary
from stats import cpu_seconds, pct

from bulkhead import gctuning, log
from bulkhead import tls as btls
from bulkhead.v1 import node_pb2, node_pb2_grpc, subscription_pb2_grpc
from bulkhead.v1 import subscription_pb2 as pb
from controlplane.pki import certs
from integration.subscription.cluster import Cluster
from nodeagent.subscription.client import SubscriptionClient

WRITER_NODES = 10


# -- worker process: many simulated agents on one event loop --------------------------------
class BenchClient(SubscriptionClient):
    """Records, per delta revision, when the message arrived and when it was applied."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, on_applied=self._applied, **kwargs)
        self.synced_at: list[tuple[float, str]] = []
        self.deltas: dict[int, list[float]] = {}     # revision -> [received, applied]
        self._received = 0.0

    async def _handle(self, message: pb.ServerMessage, acker: Any) -> bool:
        self._received = time.time()
        reached = await super()._handle(message, acker)
        if message.WhichOneof("msg") == "synced":
            self.synced_at.append((time.time(), self.stats.replica))
        return reached

    def _applied(self, revision: int, changes: Any, at: float) -> None:
        if changes:
            self.deltas[revision] = [self._received, at]


async def loop_lag(samples: list[tuple[float, float]], tick: float = 0.01) -> None:
    """How late this process's event loop wakes up: agents sharing it wait this long."""
    while True:
        before = time.monotonic()
        await asyncio.sleep(tick)
        samples.append((time.time(), time.monotonic() - before - tick))


async def worker(args: argparse.Namespace) -> None:
    addresses = args.addresses.split(",")
    names = [f"bench-{i}" for i in range(args.first, args.first + args.count)]
    # Register first, a few at a time (node-id allocation serializes on etcd anyway).
    admin, node_pems = worker_credentials(args.tls_state, names)
    channel = btls.aio_channel(addresses[0], admin)
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
                           backoff=(0.2, 2.0), credentials=node_pems.get(name))
               for name in names]
    for client in clients:
        client._index = 0
    lags: list[tuple[float, float]] = []
    lagger = asyncio.create_task(loop_lag(lags))
    tasks: list[asyncio.Task[None]] = []
    for i in range(0, len(clients), 50):   # connect in waves; registration costs etcd writes
        tasks += [asyncio.create_task(c.run()) for c in clients[i:i + 50]]
        await asyncio.sleep(0.2)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    status = Path(args.out + ".status")
    while not stop.is_set():
        data = {"synced": sum(c.synced.is_set() for c in clients),
                "connects": sum(c.stats.connects for c in clients),
                "resets": sum(c.stats.resets for c in clients),
                "snapshots": sum(c.stats.snapshots for c in clients),
                "synced_at": [c.synced_at for c in clients]}
        tmp = status.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(status)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)
    lagger.cancel()
    result = {"agents": [{"node": c.node, "deltas": c.deltas} for c in clients],
              "synced_at": [c.synced_at for c in clients],
              "stats": [vars(c.stats) for c in clients], "lag": lags}
    Path(args.out).write_text(json.dumps(result))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def worker_credentials(state: str | None, names: list[str]
                       ) -> tuple[btls.Credentials | None, dict[str, btls.Pem]]:
    """With a TLS cluster (`state`: a replica's state dir): the admin credential (to register
    the nodes) and a node certificate per agent, issued by the cluster CA as a join would."""
    if not state:
        return None, {}
    admin = btls.Credentials.admin_in(Path(state))
    ca_dir = admin.ca.parent
    ca = certs.CA.load(admin.ca.read_bytes(), (ca_dir / "ca.key").read_bytes())
    ca_pem = admin.ca.read_bytes()
    pems = {}
    for name in names:
        key = certs.new_key()
        cert = ca.issue(key.public_key(), name, certs.NODE)
        pems[name] = btls.Pem(ca_pem, certs.cert_pem(cert), certs.key_pem(key))
    return admin, pems


# -- coordinator ----------------------------------------------------------------------------
class Workers:
    def __init__(self, cluster: Cluster, addresses: str, agents: int, processes: int,
                 ack_interval: float, tag: str, tls_state: Path | None = None) -> None:
        self.cluster = cluster
        self.procs: list[asyncio.subprocess.Process] = []
        self.outs: list[Path] = []
        self.args = (addresses, agents, processes, ack_interval, tag)
        self.tls_state = tls_state

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
                *(["--tls-state", str(self.tls_state)] if self.tls_state else []),
                stderr=(self.cluster.dir / f"worker-{tag}-{w}.log").open("ab")))

    def status(self) -> list[dict[str, Any]]:
        found = []
        for out in self.outs:
            path = Path(str(out) + ".status")
            with contextlib.suppress(FileNotFoundError, ValueError):
                found.append(json.loads(path.read_text()))
        return found

    def totals(self) -> dict[str, int]:
        found = self.status()
        return {k: sum(s.get(k, 0) for s in found) for k in ("synced", "connects", "resets")}

    def pids(self) -> dict[str, int]:
        return {f"worker {i}": proc.pid for i, proc in enumerate(self.procs)}

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


@dataclass
class Load:
    """What the writer managed: a run whose writer fell behind measures something else."""
    scheduled: int = 0
    ok: int = 0
    failed: int = 0
    first_error: str = ""
    late: list[float] = dataclass_field(default_factory=list)  # send time - scheduled time
    elapsed: float = 0.0


async def write_load(cluster: Cluster, address: str, rate: float, duration: float,
                     sent: dict[str, float], tag: str) -> Load:
    """Creates endpoints at `rate` changes/s, deleting each one 40 changes later."""
    live: list[str] = []
    tasks: list[asyncio.Task[None]] = []
    load = Load(scheduled=int(rate * duration))
    start = time.monotonic()

    async def timed(key: str, call: Any) -> None:
        sent[key] = time.time()
        try:
            await call
            load.ok += 1
        except Exception as exc:
            load.failed += 1
            load.first_error = load.first_error or f"{type(exc).__name__}: {exc}"[:300]
            sent.pop(key, None)

    for i in range(load.scheduled):
        due = start + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        load.late.append(time.monotonic() - due)
        if len(live) >= 40 and i % 2:
            name = live.pop(0)
            tasks.append(asyncio.create_task(timed(name + "-",
                                                   cluster.delete_endpoint(address, name))))
        else:
            name = f"{tag}-{i}"
            live.append(name)
            node = f"bench-writer-{hash(name) % WRITER_NODES}"
            tasks.append(asyncio.create_task(timed(name + "+", cluster.create_endpoint(
                address, node, name, [f"k8s:app=load{len(name) % 5}"]))))
    await asyncio.gather(*tasks)
    load.elapsed = time.monotonic() - start
    for name in live:   # clean-up, not measured
        with contextlib.suppress(Exception):
            await cluster.delete_endpoint(address, name)
    return load


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


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    found = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            found[name] = cpu_seconds(pid)
    return found


async def caught_up(cluster: Cluster, address: str, timeout: float) -> float | None:
    """Seconds until the replica's state reached etcd's revision as of each check (twice in
    a row, 0.5 s apart), or None."""
    stub = subscription_pb2_grpc.SubscriptionAdminServiceStub(cluster.channel(address))
    start = time.time()
    streak = 0
    while time.time() - start < timeout:
        target = await cluster.revision()
        await asyncio.sleep(0.5)
        response = await stub.ListSubscriptions(pb.ListSubscriptionsRequest(), timeout=10)
        streak = streak + 1 if response.revision >= target else 0
        if streak >= 2:
            return time.time() - start
    return None


async def read_trace(replica: Any, path: Path) -> dict[str, Any]:
    """Asks the replica (SIGUSR1) to write its fan-out trace, and reads it."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    replica.process.send_signal(signal.SIGUSR1)
    for _ in range(200):
        if path.exists():
            return dict(json.loads(path.read_text()))
        await asyncio.sleep(0.05)
    return {}


async def measure(cluster: Cluster, agents: int, args: argparse.Namespace,
                  replica_a: Any, replica_b: Any, failover: bool) -> dict[str, Any]:
    processes = args.workers or max(1, min(4, agents // 50 or 1))
    workers = Workers(cluster, f"{replica_a.address},{replica_b.address}", agents,
                      processes, args.ack_interval, f"n{agents}",
                      tls_state=cluster.dir / replica_a.name if cluster.tls else None)
    report: dict[str, Any] = {"agents": agents, "workers": processes, "invalid": []}
    invalid: list[str] = report["invalid"]
    try:
        await workers.start()
        report["connect_s"] = await workers.wait_synced(agents, timeout=240)
        # 1,000 registrations are 1,000 node deltas to up to 1,000 agents: the replica's
        # watch may still be catching up, and writes started now would measure that backlog.
        report["settle_s"] = await caught_up(cluster, replica_a.address, timeout=120)
        if report["settle_s"] is None:
            invalid.append("replica a's etcd watch did not catch up within 120 s of connecting")
        before = workers.totals()
        seen: dict[int, tuple[str, float]] = {}
        sent: dict[str, float] = {}
        watcher = asyncio.create_task(watch_revisions(cluster, seen))
        lags: list[tuple[float, float]] = []
        lagger = asyncio.create_task(loop_lag(lags))
        await asyncio.sleep(0.5)
        pids = {"replica a": replica_a.process.pid, "replica b": replica_b.process.pid,
                "coordinator": os.getpid(), **workers.pids()}
        if cluster.etcd_server.pid is not None:
            pids["etcd"] = cluster.etcd_server.pid
        cpu0, t0 = cpu_of(pids), time.time()
        # Writes go through the other replica: replica a's CPU is then the fan-out's.
        load = await write_load(cluster, replica_b.address, args.rate, args.duration, sent,
                                f"w{agents}")
        await asyncio.sleep(2.0)   # let the last changes arrive
        cpu1, t1 = cpu_of(pids), time.time()
        trace = await read_trace(replica_a, cluster.dir / "trace-a.json")
        after = workers.totals()
        lagger.cancel()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        if failover:
            report.update(await fail_over(cluster, workers, agents, replica_a))
            report.update(await rolling_restart(cluster, workers, agents, replica_a,
                                                replica_b))
        results = await workers.finish()
        if failover:
            report["resumed"] = sum(1 for r in results for st in r["stats"]
                                    if st["resumes"] >= 1)
    finally:
        await workers.kill()
    # Raw clocks beside the logs (kept with BULKHEAD_KEEP_TEST_DIRS=1), for a post-mortem.
    (cluster.dir / f"timings-n{agents}.json").write_text(json.dumps({"sent": sent,
                                                                     "seen": seen}))
    report["cpu_pct"] = {k: (cpu1[k] - cpu0[k]) / (t1 - t0) * 100 for k in cpu1 if k in cpu0}
    base = [t - sent[name] for name, t in seen.values() if name in sent]
    sent_at = {rev: sent[name] for rev, (name, _) in seen.items() if name in sent}
    fanout: list[float] = []
    added: list[float] = []    # what the fan-out adds to etcd's own delivery, per change
    for result in results:
        for agent in result["agents"]:
            for rev, (_, applied) in agent["deltas"].items():
                entry = seen.get(int(rev))
                if entry is not None and entry[0] in sent:
                    fanout.append(applied - sent[entry[0]])
                    added.append(applied - entry[1])
    expected = len(sent_at) * agents
    stages = decompose(sent_at, trace, [a for r in results for a in r["agents"]])

    def in_window(samples: Any) -> list[float]:
        return [lag for at, lag in samples if t0 <= at <= t1]

    report.update({
        "changes": load.scheduled, "written": load.ok, "deltas": len(base),
        "applied": len(fanout), "expected": expected,
        "etcd_ms": summary(base), "fanout_ms": summary(fanout), "added_ms": summary(added),
        "cpu_ms_per_delta": (cpu1.get("replica a", 0) - cpu0.get("replica a", 0))
        / max(1, len(base)) * 1e3,
        "stages": stages,
        "lag": {"replica a": in_window(trace.get("lag", [])), "coordinator": in_window(lags),
                **{f"worker {i}": in_window(r["lag"]) for i, r in enumerate(results)}},
        "writer_late_ms": summary(load.late),
    })
    # -- is this run a measurement at all? --
    rate = load.ok / load.elapsed if load.elapsed else 0.0
    if load.failed:
        invalid.append(f"writer: {load.failed} of {load.scheduled} changes failed "
                       f"({load.first_error})")
    if rate < 0.95 * args.rate or pct(load.late, 0.99) > 0.1:
        invalid.append(f"writer fell behind: {rate:.0f}/s of {args.rate:.0f}/s, "
                       f"p99 {pct(load.late, 0.99) * 1e3:.0f} ms late")
    if len(base) < load.ok:
        invalid.append(f"etcd watch saw {len(base)} of {load.ok} written changes")
    if len(fanout) < expected:
        invalid.append(f"agents applied {len(fanout)} of {expected} (change, agent) pairs")
    if after["connects"] != before["connects"] or after["resets"] != before["resets"]:
        invalid.append(f"agents reconnected during the run "
                       f"({after['connects'] - before['connects']} connects, "
                       f"{after['resets'] - before['resets']} resets)")
    if not trace:
        invalid.append("replica a wrote no fan-out trace (stages unknown)")
    if len(results) < len(workers.procs):
        invalid.append(f"only {len(results)} of {len(workers.procs)} agent processes reported")
    if failover:
        if report["resume_all_s"] == float("inf"):
            invalid.append("resume incomplete: not every agent of replica a synced again "
                           "within 60 s")
        elif report["on_killed"] < agents:
            invalid.append(f"resume: only {report['on_killed']} of {agents} agents were on "
                           f"replica a")
        if report["rolling_s"] == float("inf"):
            invalid.append("rolling restart incomplete: not every agent synced again on the "
                           "restarted replica a within 60 s")
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
    await asyncio.sleep(0.5)    # the status files are rewritten every 0.25 s
    snapshots = sum(s.get("snapshots", 0) for s in workers.status()) - agents
    return {"resume_all_s": (done_at - killed) if done_at else float("inf"),
            "resume_snapshots": snapshots, "on_killed": on_a}


async def synced_after(workers: Workers, since: float, on: str,
                       timeout: float = 60.0) -> float | None:
    """Seconds from `since` until every agent synced on a replica named `on`-…; None when
    not all did within `timeout`."""
    while time.time() < since + timeout:
        latest: list[float | None] = []
        for s in workers.status():
            for client in s["synced_at"]:
                latest.append(min((t for t, rep in client if t > since
                                   and rep.startswith(f"{on}-")), default=None))
        if latest and all(t is not None for t in latest):
            return max(t for t in latest if t is not None) - since
        await asyncio.sleep(0.25)
    return None


async def rolling_restart(cluster: Cluster, workers: Workers, agents: int, replica_a: Any,
                          replica_b: Any) -> dict[str, Any]:
    """After the fail-over every agent is on b. A rolling upgrade's next steps: a comes back
    (a fresh replica: no history before its start), then b is stopped, so every agent moves
    to a with a token older than a's own history (the issue-15 case), then b comes back."""
    snapshots = sum(s.get("snapshots", 0) for s in workers.status())
    await cluster.start_replica(replica_a.name, *replica_args(), port=replica_a.port)
    stopped = time.time()
    await cluster.terminate(replica_b.name)
    took = await synced_after(workers, stopped, replica_a.name)
    taken = sum(s.get("snapshots", 0) for s in workers.status()) - snapshots
    await cluster.start_replica(replica_b.name, *replica_args(), port=replica_b.port)
    return {"rolling_s": took if took is not None else float("inf"),
            "rolling_snapshots": taken}


def replica_args() -> list[str]:
    return ["--node-ttl", "60", *os.environ.get("BENCH_CP_ARGS", "").split()]


async def run_cluster(args: argparse.Namespace, counts: list[int], *, tls: bool,
                      failover: bool) -> list[dict[str, Any]]:
    """One cluster (an etcd, replicas a and b), measured at each agent count; the fail-over and
    rolling restart after the last count when `failover`."""
    async with Cluster(tls=tls) as cluster:
        extra = replica_args()
        # Replica a runs with the fan-out tracer installed (bench/fanout_trace.py).
        traced = (sys.executable, str(Path(__file__).resolve().parent / "fanout_trace.py"),
                  str(cluster.dir / "trace-a.json"))
        a = await cluster.start_replica("a", *extra, command=traced)
        b = await cluster.start_replica("b", *extra)
        for w in range(WRITER_NODES):
            await cluster.register(b.address, f"bench-writer-{w}", f"172.31.0.{w + 1}")
        keep = asyncio.create_task(heartbeat(cluster, b.address))
        reports = []
        try:
            for i, n in enumerate(counts):
                print(f"-- {n} agents{' over mutual TLS' if tls else ''} ...", flush=True)
                report = await measure(cluster, n, args, a, b,
                                       failover and i == len(counts) - 1)
                reports.append(report)
                print_report(report, args.rate)
        finally:
            keep.cancel()
    return reports


async def coordinator(args: argparse.Namespace) -> int:
    log.configure("bench", level="warning")
    counts = [int(n) for n in args.agents.split(",")]
    reports = await run_cluster(args, counts, tls=False, failover=True)
    tls_ok = True
    tls_agents = args.tls_agents if args.tls_agents is not None else counts[0]
    if tls_agents:
        plain = next((r for r in reports if r["agents"] == tls_agents), None)
        if plain is None:
            plain = (await run_cluster(args, [tls_agents], tls=False, failover=False))[0]
        secured = (await run_cluster(args, [tls_agents], tls=True, failover=False))[0]
        tls_ok = print_tls_cost(plain, secured)
    last = reports[-1]
    base = f"etcd watch p99 {last['etcd_ms'][1]:.1f} ms"
    if last["invalid"]:
        print(f"fanout p99 ms @{last['agents']}: invalid ({base}; "
              f"{'; '.join(last['invalid'])})")
        return 1
    print(f"fanout p99 ms @{last['agents']}: {last['fanout_ms'][1]:.1f} ({base})")
    return 0 if tls_ok else 1


def print_tls_cost(plain: dict[str, Any], secured: dict[str, Any]) -> bool:
    """The same load on a plaintext and a mutual-TLS cluster: what TLS adds."""
    if plain["invalid"] or secured["invalid"]:
        print(f"TLS cost @{plain['agents']}: invalid (plaintext: "
              f"{'; '.join(plain['invalid']) or 'ok'}; TLS: "
              f"{'; '.join(secured['invalid']) or 'ok'})")
        return False
    (p50, p99, _), (t50, t99, _) = plain["fanout_ms"], secured["fanout_ms"]
    print(f"TLS cost @{plain['agents']} agents: change -> applied p50 {p50:.1f} -> {t50:.1f} ms, "
          f"p99 {p99:.1f} -> {t99:.1f} ms ({t99 - p99:+.1f} ms); after the etcd watch (what "
          f"the fan-out adds) p99 {plain['added_ms'][1]:.1f} -> {secured['added_ms'][1]:.1f} ms; "
          f"control-plane CPU per delta "
          f"{plain['cpu_ms_per_delta']:.2f} -> {secured['cpu_ms_per_delta']:.2f} ms "
          f"({secured['cpu_ms_per_delta'] / max(plain['cpu_ms_per_delta'], 1e-9):.2f}x); "
          f"connect+sync {plain['connect_s']:.1f} -> {secured['connect_s']:.1f} s")
    return True


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
    print(f"agents {r['agents']} in {r['workers']} processes: connected+synced in "
          f"{r['connect_s']:.1f} s, replica's watch caught up in {r['settle_s'] or -1:.1f} s; "
          f"{r['changes']} changes at {rate:.0f}/s, {r['written']} "
          f"written, {r['deltas']} seen by the etcd watch; {r['applied']}/{r['expected']} "
          f"agent applies")
    for reason in r["invalid"]:
        print(f"  INVALID: {reason}")
    print(f"  etcd watch delivery     p50 {e[0]:7.1f} ms  p99 {e[1]:7.1f} ms  max {e[2]:7.1f} ms")
    print(f"  change -> agent applied p50 {f[0]:7.1f} ms  p99 {f[1]:7.1f} ms  max {f[2]:7.1f} ms"
          f"  (p99 ratio vs etcd {f[1] / max(e[1], 1e-9):.1f}x)")
    d = r["added_ms"]
    print(f"  after the etcd watch    p50 {d[0]:7.1f} ms  p99 {d[1]:7.1f} ms  max {d[2]:7.1f} ms"
          f"  (what the fan-out adds)")
    print_stages(r["stages"])
    print("  event-loop lag: " + "; ".join(f"{k} {lag_summary(v)}"
                                           for k, v in r["lag"].items() if v))
    w = r["writer_late_ms"]
    print(f"  writer lateness p50 {w[0]:.1f} / p99 {w[1]:.1f} / max {w[2]:.1f} ms")
    print("  CPU % of one core: " + ", ".join(f"{k} {v:.0f}" for k, v in r["cpu_pct"].items())
          + f" (total {sum(r['cpu_pct'].values()):.0f} of {100 * (os.cpu_count() or 1)})")
    print(f"  control-plane CPU per delta: {r['cpu_ms_per_delta']:.2f} ms "
          f"(all {r['agents']} agents)")
    if "resume_all_s" in r:
        print(f"  replica killed: {r['on_killed']} agents were on it; all synced again on the "
              f"other replica in {r['resume_all_s']:.2f} s; resumed {r['resumed']}, "
              f"took a snapshot: {r['resume_snapshots']}")
    if "rolling_s" in r:
        print(f"  rolling restart (a back, b stopped): all synced again on the fresh replica "
              f"in {r['rolling_s']:.2f} s; snapshots taken: {r['rolling_snapshots']} "
              f"(target 0)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", default="100,1000", help="agent counts, comma-separated")
    p.add_argument("--rate", type=float, default=100.0, help="changes per second")
    p.add_argument("--duration", type=float, default=15.0, help="seconds of writes per count")
    p.add_argument("--workers", type=int, default=0,
                   help="agent processes (default: one per 50 agents, at most 4)")
    p.add_argument("--ack-interval", type=float, default=0.5)
    p.add_argument("--tls-agents", type=int,
                   help="agents of the TLS-vs-plaintext comparison (default: the first of "
                        "--agents; 0: no comparison)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tls-state", help=argparse.SUPPRESS)
    p.add_argument("--addresses", help=argparse.SUPPRESS)
    p.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        log.configure("bench-agent", level="warning")
        gctuning.tune_for_server()   # as bulkhead-agent does
        asyncio.run(worker(args))
    else:
        sys.exit(asyncio.run(coordinator(args)))


if __name__ == "__main__":
    main()
