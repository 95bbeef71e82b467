"""Clustermesh benchmark: a change in a remote cluster -> applied on a local agent, against a
change in the local cluster -> applied on the same agent, in the same run (DESIGN.md §14:
remote p99 <= 2x local p99); and the initial sync of a remote cluster holding N identities
and N endpoints (connect -> status ready and every entry on the agent).

Two etcds (Debian binary), one control-plane replica per cluster in this process, one
simulated agent (the real subscription client) on the local cluster. Each round creates one
endpoint in the remote cluster and one in the local cluster, alternating which goes first;
a change's clock starts when its create request is sent and stops when the agent applied its
ipcache entry (the remote one travels remote etcd -> syncer -> local etcd -> replica -> agent).

    python bench/clustermesh.py [--changes 200] [--initial 10000]

About 2 minutes at the defaults on a shared 2-core box, most of it populating the remote
through its API (10,000 endpoint creates) before the measured sync.

Last line: `clustermesh remote/local p99 ratio: <x>`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stats import pct

from bulkhead import log
from bulkhead.v1 import (
    clustermesh_pb2,
    clustermesh_pb2_grpc,
    endpoint_pb2,
    endpoint_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
)
from bulkhead.v1 import subscription_pb2 as pb
from controlplane.config import Config
from integration.etcd_process import etcd_process
from nodeagent.subscription.client import SubscriptionClient
from tests.conftest import Replica, start_replica

NS = "k8s:io.kubernetes.pod.namespace=default"
CONCURRENCY = 16
PER_NODE = 200
"""Endpoints per remote node when populating (a node's pod CIDR is a /24)."""
NODE_TTL = 3600
"""The remote's nodes have no agent renewing their lease: long enough for the whole run."""


class Watcher:
    """A simulated agent that records when each ipcache prefix was applied."""

    def __init__(self, replica: Replica) -> None:
        self.applied: dict[str, float] = {}
        self.waiting: dict[str, asyncio.Future[float]] = {}
        self.client = SubscriptionClient("bench-l1", [replica.address],
                                         underlay_ip="192.0.2.200", backoff=(0.1, 1.0),
                                         on_applied=self._applied)
        self.task: asyncio.Task[None] | None = None

    def _applied(self, revision: int, changes: Sequence[pb.Change], at: float) -> None:
        now = time.perf_counter()
        for change in changes:
            if change.WhichOneof("object") == "ipcache":
                ip = change.ipcache.prefix.split("/")[0]
                self.applied[ip] = now
                future = self.waiting.pop(ip, None)
                if future is not None and not future.done():
                    future.set_result(now)

    async def start(self) -> None:
        self.task = asyncio.create_task(self.client.run())
        await asyncio.wait_for(self.client.synced.wait(), 30)

    def expect(self, ip: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if ip in self.applied:
            future.set_result(self.applied[ip])
        else:
            self.waiting[ip] = future
        return future

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass


async def register(replica: Replica, node: str, ip: str) -> None:
    await node_pb2_grpc.NodeServiceStub(replica.channel()).Register(
        node_pb2.RegisterNodeRequest(name=node, underlay_ip=ip))


async def create(replica: Replica, node: str, name: str, labels: list[str]) -> tuple[str, float]:
    """(the endpoint's IP, when its create request was sent)."""
    started = time.perf_counter()
    made = await endpoint_pb2_grpc.EndpointServiceStub(replica.channel()).Create(
        endpoint_pb2.CreateEndpointRequest(node=node, namespace="default", name=name,
                                           labels=labels))
    return made.ip, started


async def changes(local: Replica, remote: Replica, watcher: Watcher, count: int,
                  tag: str) -> tuple[list[float], list[float]]:
    remote_ms: list[float] = []
    local_ms: list[float] = []
    for i in range(count):
        order = [(remote, "r1", remote_ms), (local, "bench-l1", local_ms)]
        for replica, node, out in (order if i % 2 == 0 else order[::-1]):
            ip, started = await create(replica, node, f"{tag}-{node}-{i}",
                                       [NS, "k8s:app=bench"])
            done = await asyncio.wait_for(watcher.expect(ip), 30)
            out.append((done - started) * 1000)
    return remote_ms, local_ms


async def populate(remote: Replica, count: int) -> None:
    """`count` endpoints in the remote cluster, each with labels of its own (an identity): one
    writer per node, so concurrent creates never race for a node's free addresses."""
    nodes = max(CONCURRENCY, count // PER_NODE + 1)
    for n in range(nodes):
        await register(remote, f"r{2 + n}", f"192.0.3.{n % 250 + 1}")

    async def writer(n: int) -> None:
        for i in range(n, count, nodes):
            await create(remote, f"r{2 + n}", f"init-{i}", [NS, f"k8s:app=init-{i}"])
    await asyncio.gather(*(writer(n) for n in range(nodes)))


async def initial_sync(local: Replica, remote: Replica, remote_endpoint: str,
                       watcher: Watcher, count: int) -> tuple[float, float]:
    """Seconds from connect until the remote's status first says ready (listed and mirrored
    into the local etcd), and until it is ready and the agent has all its entries."""
    started = time.perf_counter()
    ready_at = 0.0
    mesh = clustermesh_pb2_grpc.ClusterMeshServiceStub(local.channel())
    await mesh.Connect(clustermesh_pb2.ConnectClusterRequest(
        name=remote.cp.config.cluster_name, etcd_endpoints=[remote_endpoint]))
    while True:
        status = await mesh.Status(clustermesh_pb2.ClusterMeshStatusRequest())
        ready = bool(status.remotes and status.remotes[0].ready)
        if ready and not ready_at:
            ready_at = time.perf_counter() - started
        state = watcher.client.state
        if (ready and sum(1 for e in state.ipcache.values()
                          if e.cluster == remote.cp.config.cluster_name) >= count
                and sum(1 for i in state.identities if i >> 16 == 2) >= count):
            return ready_at, time.perf_counter() - started
        await asyncio.sleep(0.05)


async def main(args: argparse.Namespace) -> None:
    with etcd_process() as local_etcd, etcd_process() as remote_etcd:
        state_dir = Path(tempfile.gettempdir())
        local = await start_replica(Config(
            etcd_endpoints=[local_etcd.endpoint], cluster_name="bench-c1", cluster_id=1,
            cluster_pool="10.1.0.0/16", state_dir=state_dir, node_ttl=NODE_TTL))
        remote = await start_replica(Config(
            etcd_endpoints=[remote_etcd.endpoint], cluster_name="bench-c2", cluster_id=2,
            cluster_pool="10.2.0.0/16", state_dir=state_dir, node_ttl=NODE_TTL))
        watcher = Watcher(local)
        try:
            await register(remote, "r1", "192.0.2.2")
            await register(local, "bench-l1", "192.0.2.200")
            await watcher.start()
            started = time.perf_counter()
            await populate(remote, args.initial)
            print(f"populated the remote cluster with {args.initial} endpoints: "
                  f"{time.perf_counter() - started:.2f} s", flush=True)
            ready, seconds = await initial_sync(local, remote, remote_etcd.endpoint, watcher,
                                                args.initial)
            print(f"remote status ready (listed and mirrored into the local etcd): "
                  f"{ready:.2f} s", flush=True)
            print(f"initial sync of a remote cluster with {args.initial} identities and "
                  f"{args.initial} endpoints: {seconds:.2f} s", flush=True)
            await changes(local, remote, watcher, 10, "warm")
            remote_ms, local_ms = await changes(local, remote, watcher, args.changes, "chg")
        finally:
            await watcher.stop()
            await local.stop()
            await remote.stop()
    for name, values in (("remote change -> local agent", remote_ms),
                         ("local change -> local agent", local_ms)):
        print(f"{name}: p50 {pct(values, 0.5):.1f} ms, p99 {pct(values, 0.99):.1f} ms "
              f"({len(values)} changes)")
    print(f"clustermesh remote/local p99 ratio: {pct(remote_ms, 0.99) / pct(local_ms, 0.99):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--initial", type=int, default=10000,
                        help="identities and endpoints in the remote cluster before connecting "
                             "(the issue's figure; populating 10000 through the API takes "
                             "about 75 s on a shared 2-core box)")
    log.configure("bench", level="warning")
    asyncio.run(main(parser.parse_args()))
