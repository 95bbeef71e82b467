"""Identity allocation and lookup throughput, against raw etcd measured in the same run.

(a) raw etcd create-only transactions/s (same client library, same concurrency)
(b) new identities/s through the gRPC API of a control plane in its own process
(c) lookups/s of already allocated label sets through the gRPC API, one unary Lookup each
(c0) the standard gRPC health Check, same concurrency: a unary call doing no work, the ceiling
     of (c) on this machine (grpc-python spends ~300 us of CPU per call on each side)
(c-batch) the same lookups through LookupMany, --batch label sets per call from
     --batch-concurrency callers; the rate counts label sets, the latencies are per call (what
     a caller waits for its answers). A caller that batches needs few calls in flight: 20
     callers x 64 sets would queue ~1,300 sets and wait ~30 ms for them.
(c') the same lookups in-process, as the control plane and agents answer them (no RPC)
(d) p50/p99 latencies of each
(b-tls) new identities/s as in (b), through a second control plane that runs as shipped
     (mutual TLS with the admin credential, authorization on every call); (b) and (b-tls)
     take turns in rounds so neither gets the emptier etcd
Targets: (b) >= 0.5 x (a); lookups >= 10,000/s with p99 <= 5 ms, given for the unary (c) and
the batched (c-batch) path alike; (b-tls) >= 0.8 x (b).
BENCH_CP_PREFIX="-m cProfile -o /tmp/cp.prof" profiles the control plane process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from stats import cpu_seconds, pct

from bulkhead import log
from bulkhead import tls as btls
from bulkhead.v1 import identity_pb2, identity_pb2_grpc
from controlplane.identity.allocator import IdentityAllocator, IdentityRange
from controlplane.identity.index import IdentityIndex
from controlplane.store import etcd as ops
from controlplane.store.cache import ClusterCache
from controlplane.store.embedded import free_port
from controlplane.store.etcd import Etcd
from controlplane.store.keys import Keys
from integration.etcd_process import etcd_process


async def run(count: int, concurrency: int,
              op: Callable[[int], Awaitable[None]]) -> tuple[float, list[float]]:
    """Runs op(0..count-1) with `concurrency` workers; returns (ops/s, latencies)."""
    latencies: list[float] = []
    next_i = iter(range(count))

    async def worker() -> None:
        for i in next_i:
            t0 = time.perf_counter()
            await op(i)
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - start), latencies


def line(name: str, rate: float, lat: list[float]) -> None:
    p50, p99 = pct(lat, 0.5) * 1e3, pct(lat, 0.99) * 1e3
    print(f"{name:<34} {rate:>9.0f}/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms", flush=True)


async def local_lookups(etcd: Etcd, cluster: str,
                        sets: list[list[str]]) -> tuple[float, list[float]]:
    """Lookups as the control plane answers them inside (endpoint create, the Lookup RPC's
    body) and as agents do (they hold every identity from their subscription): the
    watch-fed index, no RPC."""
    keys = Keys(cluster)
    cache = ClusterCache(etcd, keys.prefix)
    index = IdentityIndex(keys)
    cache.add_listener(index)
    await cache.start()
    try:
        allocator = IdentityAllocator(etcd, keys, index, IdentityRange.for_cluster(0))
        latencies = []
        start = time.perf_counter()
        for labels in sets:
            t0 = time.perf_counter()
            allocator.lookup(labels)
            latencies.append(time.perf_counter() - t0)
        return len(sets) / (time.perf_counter() - start), latencies
    finally:
        await cache.stop()


async def merged(metrics_port: int) -> tuple[float, float]:
    """(merged transactions, allocations in them) from the control plane's /metrics."""

    def scrape() -> tuple[float, float]:
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        # A counter family drops `_total` from its name; its samples keep it.
        found = {sample.name: sample.value
                 for family in text_string_to_metric_families(text)
                 for sample in family.samples}
        return (found["bulkhead_identity_merged_txns_total"],
                found["bulkhead_identity_merged_allocations_total"])

    return await asyncio.to_thread(scrape)


async def start_controlplane(etcd_endpoint: str, cluster: str, port: int, metrics_port: int,
                             state_dir: Path, *, tls: bool, prefix: Sequence[str] = ()
                             ) -> asyncio.subprocess.Process:
    """A control plane in its own process: `--insecure` unless `tls` (then as shipped)."""
    env = {**os.environ, "BULKHEAD_LOG_LEVEL": "warning"}
    return await asyncio.create_subprocess_exec(
        sys.executable, *prefix, "-m", "controlplane.main",
        "--etcd-endpoints", etcd_endpoint, "--listen", f"127.0.0.1:{port}",
        "--metrics-listen", f"127.0.0.1:{metrics_port}", "--state-dir", str(state_dir),
        "--cluster-name", cluster, *([] if tls else ["--insecure"]), env=env,
        stdout=subprocess.DEVNULL)


async def tls_ready(address: str, state_dir: Path, timeout: float = 30.0) -> grpc.aio.Channel:
    """A channel with the admin credential the control plane writes at start, once ready."""
    admin = btls.Credentials.admin_in(state_dir)
    deadline = time.monotonic() + timeout
    while not (admin.key.exists() and admin.cert.exists()):
        if time.monotonic() > deadline:
            raise SystemExit(f"no admin credential in {state_dir} after {timeout:.0f} s")
        await asyncio.sleep(0.1)
    channel = btls.aio_channel(address, admin)
    await asyncio.wait_for(channel.channel_ready(), timeout)
    return channel


async def tls_rounds(args: argparse.Namespace, plain: identity_pb2_grpc.IdentityServiceStub,
                     secured: identity_pb2_grpc.IdentityServiceStub
                     ) -> tuple[float, list[float], float, list[float], float]:
    """New allocations through both control planes, taking turns (`--tls-rounds` each), so
    that etcd's growth (and whatever else the machine does meanwhile) weighs on both alike;
    returns (plain rate, latencies, TLS rate, latencies, the median of each round's TLS /
    plain rate: the ratio least moved by a busy neighbour in one round)."""
    per = max(1, args.count // args.tls_rounds)
    rates: dict[str, list[float]] = {"plain": [], "tls": []}
    lats: dict[str, list[float]] = {"plain": [], "tls": []}
    for r in range(args.tls_rounds):
        order = [("plain", plain), ("tls", secured)]
        for kind, stub in order if r % 2 == 0 else order[::-1]:
            async def allocate(i: int, stub: identity_pb2_grpc.IdentityServiceStub = stub,
                               tag: str = f"{kind}{r}") -> None:
                await stub.Allocate(identity_pb2.AllocateIdentityRequest(
                    labels=[f"k8s:app={tag}-{i}", "k8s:io.kubernetes.pod.namespace=bench"]))

            rate, lat = await run(per, args.concurrency, allocate)
            rates[kind].append(rate)
            lats[kind] += lat
    print("    rounds, allocations/s plaintext | TLS: " + ", ".join(
        f"{p:.0f} | {t:.0f}" for p, t in zip(rates["plain"], rates["tls"], strict=True)))
    ratios = sorted(t / p for p, t in zip(rates["plain"], rates["tls"], strict=True))
    mid = len(ratios) // 2
    median = ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2
    return (sum(rates["plain"]) / len(rates["plain"]), lats["plain"],
            sum(rates["tls"]) / len(rates["tls"]), lats["tls"], median)


async def main_async(args: argparse.Namespace) -> None:
    with etcd_process() as server:
        etcd = Etcd([server.endpoint])
        run_id = uuid.uuid4().hex[:8]

        async def raw_create(i: int) -> None:
            # The same shape as an allocation: two keys created only if both are absent.
            a, b = f"/bench/{run_id}/labels/{i}", f"/bench/{run_id}/id/{i}"
            await etcd.txn([ops.version_is(a, 0), ops.version_is(b, 0)],
                           [ops.put(a, b"{}"), ops.put(b, b"{}")])

        await run(200, args.concurrency, raw_create)  # warm-up
        raw_rate, raw_lat = await run(args.count, args.concurrency, raw_create)
        line("(a) raw etcd create-only txn", raw_rate, raw_lat)

        port, metrics_port = free_port(), free_port()
        profile = os.environ.get("BENCH_CP_PREFIX", "").split()
        state = Path(tempfile.mkdtemp(prefix="bulkhead-bench-identity-"))
        cp = await start_controlplane(server.endpoint, f"bench{run_id}", port, metrics_port,
                                      state / "plain", tls=False, prefix=profile)
        tls_port = free_port()
        tls_cp = await start_controlplane(server.endpoint, f"bench{run_id}t", tls_port,
                                          free_port(), state / "tls", tls=True)
        try:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            await asyncio.wait_for(channel.channel_ready(), 30)
            # Both serving before anything is measured (a starting one would take CPU).
            tls_channel = await tls_ready(f"127.0.0.1:{tls_port}", state / "tls")
            stub = identity_pb2_grpc.IdentityServiceStub(channel)

            async def allocate(i: int) -> None:
                await stub.Allocate(identity_pb2.AllocateIdentityRequest(
                    labels=[f"k8s:app=a{i}", "k8s:io.kubernetes.pod.namespace=bench"]))

            warm = [f"k8s:warm=w{i}" for i in range(200)]
            await run(200, args.concurrency, lambda i: stub.Allocate(
                identity_pb2.AllocateIdentityRequest(labels=[warm[i]])))
            cpu0, own0 = cpu_seconds(cp.pid), cpu_seconds()
            merged0 = await merged(metrics_port)
            alloc_rate, alloc_lat = await run(args.count, args.concurrency, allocate)
            cpu1, own1 = cpu_seconds(cp.pid), cpu_seconds()
            merged1 = await merged(metrics_port)
            line("(b) new identities via gRPC", alloc_rate, alloc_lat)
            print(f"    CPU per allocation: control plane {1e6 * (cpu1 - cpu0) / args.count:.0f}"
                  f" us, benchmark client {1e6 * (own1 - own0) / args.count:.0f} us; "
                  f"{merged1[1] - merged0[1]:.0f} of {args.count} allocations shared "
                  f"{merged1[0] - merged0[0]:.0f} merged etcd transactions")

            known = args.count

            async def lookup(i: int) -> None:
                await stub.Lookup(identity_pb2.LookupIdentityRequest(
                    labels=[f"k8s:app=a{i % known}", "k8s:io.kubernetes.pod.namespace=bench"]))

            await asyncio.sleep(0.5)  # let the replica's cache see the last allocations
            lookup_rate, lookup_lat = await run(args.lookups, args.concurrency, lookup)
            line("(c) lookups of known sets via gRPC", lookup_rate, lookup_lat)

            health = health_pb2_grpc.HealthStub(channel)

            async def check(i: int) -> None:
                await health.Check(health_pb2.HealthCheckRequest())

            await run(200, args.concurrency, check)  # warm-up
            check_rate, check_lat = await run(args.lookups, args.concurrency, check)
            line("(c0) gRPC health Check (no work)", check_rate, check_lat)

            batch = args.batch

            def lookup_many_request(i: int) -> identity_pb2.LookupIdentitiesRequest:
                return identity_pb2.LookupIdentitiesRequest(lookups=[
                    identity_pb2.LookupIdentityRequest(labels=[
                        f"k8s:app=a{(i * batch + j) % known}",
                        "k8s:io.kubernetes.pod.namespace=bench"])
                    for j in range(batch)])

            # Checks the answers once (every set known, in order) outside the measurement.
            answer = await stub.LookupMany(lookup_many_request(0))
            if (len(answer.results) != batch or not all(r.found for r in answer.results)
                    or [r.identity.labels[0] for r in answer.results]
                    != [f"k8s:app=a{j % known}" for j in range(batch)]):
                raise SystemExit("LookupMany did not find every known label set in order")

            async def lookup_many(i: int) -> None:
                await stub.LookupMany(lookup_many_request(i))

            calls = max(1000, args.lookups // batch)
            await run(50, args.batch_concurrency, lookup_many)  # warm-up
            call_rate, batch_lat = await run(calls, args.batch_concurrency, lookup_many)
            batch_rate = call_rate * batch
            line(f"(c-batch) LookupMany {args.batch_concurrency}x{batch}", batch_rate, batch_lat)
            local_rate, local_lat = await local_lookups(
                etcd, f"bench{run_id}", [[f"k8s:app=a{i % known}",
                                          "k8s:io.kubernetes.pod.namespace=bench"]
                                         for i in range(args.lookups)])
            line("(c') the same, in-process cache", local_rate, local_lat)

            # The TLS cost: the same allocations through a control plane as shipped.
            secured = identity_pb2_grpc.IdentityServiceStub(tls_channel)
            await run(200, args.concurrency, lambda i: secured.Allocate(
                identity_pb2.AllocateIdentityRequest(labels=[f"k8s:warmtls=w{i}"])))
            tcpu0 = cpu_seconds(tls_cp.pid)
            pcpu0 = cpu_seconds(cp.pid)
            plain_rate, plain_lat, tls_rate, tls_lat, tls_ratio = await tls_rounds(args, stub,
                                                                                  secured)
            tcpu1, pcpu1 = cpu_seconds(tls_cp.pid), cpu_seconds(cp.pid)
            line("(b) again, taking turns with (b-tls)", plain_rate, plain_lat)
            line("(b-tls) new identities via mutual TLS", tls_rate, tls_lat)
            each = max(1, args.count // args.tls_rounds) * args.tls_rounds
            print(f"    CPU per allocation, control plane: plaintext "
                  f"{1e6 * (pcpu1 - pcpu0) / each:.0f} us, TLS {1e6 * (tcpu1 - tcpu0) / each:.0f}"
                  f" us ({args.tls_rounds} rounds each, {each} allocations each)")
            await tls_channel.close()
            await channel.close()
        finally:
            for process in (cp, tls_cp):
                process.terminate()
                await asyncio.wait_for(process.wait(), 10)
            await etcd.close()
            shutil.rmtree(state, ignore_errors=True)

    ratio = alloc_rate / raw_rate
    print(f"targets: (b)/(a) >= 0.5 -> {ratio:.2f} {'ok' if ratio >= 0.5 else 'MISSED'}; "
          f"(c) >= 10000/s -> {lookup_rate:.0f} {'ok' if lookup_rate >= 10000 else 'MISSED'}; "
          f"(c) p99 <= 5 ms -> {pct(lookup_lat, 0.99) * 1e3:.2f} "
          f"{'ok' if pct(lookup_lat, 0.99) * 1e3 <= 5 else 'MISSED'} "
          f"(unary ceiling (c0): {check_rate:.0f}/s); "
          f"batched {args.batch_concurrency}x{args.batch} (c-batch) >= 10000 lookups/s -> "
          f"{batch_rate:.0f} "
          f"{'ok' if batch_rate >= 10000 else 'MISSED'}; "
          f"(c-batch) p99 per call <= 5 ms -> {pct(batch_lat, 0.99) * 1e3:.2f} "
          f"{'ok' if pct(batch_lat, 0.99) * 1e3 <= 5 else 'MISSED'} "
          f"(in-process: {local_rate:.0f}/s, p99 {pct(local_lat, 0.99) * 1e3:.3f} ms)")
    print(f"TLS cost: (b-tls)/(b) >= 0.8 (median of the rounds' ratios) -> {tls_ratio:.2f} "
          f"{'ok' if tls_ratio >= 0.8 else 'MISSED'} ({plain_rate:.0f}/s plaintext, "
          f"{tls_rate:.0f}/s mutual TLS; p50 {pct(plain_lat, 0.5) * 1e3:.2f} -> "
          f"{pct(tls_lat, 0.5) * 1e3:.2f} ms, p99 {pct(plain_lat, 0.99) * 1e3:.2f} -> "
          f"{pct(tls_lat, 0.99) * 1e3:.2f} ms)")
    print(f"identity alloc ratio: {ratio:.2f}; with TLS: {tls_ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=3000, help="allocations per phase")
    parser.add_argument("--lookups", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--tls-rounds", type=int, default=6,
                        help="turns each of (b) and (b-tls) take, --count split among them")
    parser.add_argument("--batch", type=int, default=64,
                        help="label sets per LookupMany call in (c-batch) (1-1024)")
    parser.add_argument("--batch-concurrency", type=int, default=2,
                        help="concurrent LookupMany callers in (c-batch)")
    args = parser.parse_args()
    if not 1 <= args.batch <= 1024:
        parser.error("--batch must be 1-1024")
    if args.tls_rounds < 1:
        parser.error("--tls-rounds must be at least 1")
    log.configure("bench", level="warning")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
