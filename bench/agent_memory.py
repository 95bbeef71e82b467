"""Grow a lab's ipcache through the control plane and read an agent's RSS, for
bench/datapath.py.

Endpoints are created on agent-less "filler" nodes registered through NodeService (a /24 pod
CIDR each, so 40 nodes hold 10,000 endpoints) and heartbeated so their leases, which the
endpoints share, stay alive.  Every agent of the lab receives each endpoint as an ipcache
entry (and its identity), which is exactly what an agent holds per remote endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from bulkhead import tls
from bulkhead.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    endpoint_pb2,
    endpoint_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    types_pb2,
)

PER_NODE = 250
IDENTITIES = 100
CONCURRENCY = 32


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def ipcache_entries(socket: str) -> int:
    with grpc.insecure_channel(f"unix:{socket}") as channel:
        status = agent_pb2_grpc.AgentServiceStub(channel).AgentStatus(
            agent_pb2.AgentStatusRequest(), timeout=10)
    return int(status.map_entries["ipcache"])


@contextlib.contextmanager
def filler_nodes(cp: str, count: int, tag: str, credentials: tls.Material | None = None
                 ) -> Iterator[list[types_pb2.Node]]:
    """Registers ``count`` agent-less nodes and heartbeats them while the block runs."""
    channel = tls.channel(cp, credentials)
    stub = node_pb2_grpc.NodeServiceStub(channel)
    nodes = [stub.Register(node_pb2.RegisterNodeRequest(
        name=f"fill{tag}-{i}", underlay_ip=f"198.51.100.{i + 1}"), timeout=10)
        for i in range(count)]
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(3.0):
            for node in nodes:
                with contextlib.suppress(grpc.RpcError):
                    stub.Heartbeat(node_pb2.HeartbeatRequest(name=node.name), timeout=5)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield nodes
    finally:
        stop.set()
        thread.join()
        channel.close()


async def create_endpoints(cp: str, nodes: list[types_pb2.Node], total: int,
                           credentials: tls.Material | None = None) -> None:
    """``total`` endpoints, PER_NODE per filler node, IDENTITIES distinct label sets, with
    explicit IPs (the registry would otherwise scan for a free one each time)."""
    jobs: asyncio.Queue[tuple[int, str, str]] = asyncio.Queue()
    for i in range(total):
        node = nodes[i // PER_NODE]
        ip = ipaddress.IPv4Network(node.pod_cidr).network_address + 2 + i % PER_NODE
        jobs.put_nowait((i, node.name, str(ip)))
    async with tls.aio_channel(cp, credentials) as channel:
        stub = endpoint_pb2_grpc.EndpointServiceStub(channel)

        async def work() -> None:
            while not jobs.empty():
                i, node, ip = jobs.get_nowait()
                await stub.Create(endpoint_pb2.CreateEndpointRequest(
                    node=node, namespace="bench", name=f"filler-{i}", ip=ip,
                    labels=[f"k8s:app=filler-{i % IDENTITIES}",
                            "k8s:io.kubernetes.pod.namespace=bench"]), timeout=60)

        await asyncio.gather(*(work() for _ in range(CONCURRENCY)))


def measure(cp: str, agent_pid: int, agent_socket: str, endpoints: int, tag: str,
            timeout: float = 180.0, credentials: tls.Material | None = None
            ) -> dict[str, float]:
    """RSS of one agent before and after ``endpoints`` remote endpoints reach its ipcache;
    `credentials`: the admin's, for a control plane that serves TLS (the lab's)."""
    entries_before = ipcache_entries(agent_socket)
    rss_before = rss_kib(agent_pid)
    started = time.monotonic()
    with filler_nodes(cp, -(-endpoints // PER_NODE), tag, credentials) as nodes:
        asyncio.run(create_endpoints(cp, nodes, endpoints, credentials))
        created = time.monotonic() - started
        target = entries_before + endpoints
        deadline = time.monotonic() + timeout
        while (entries := ipcache_entries(agent_socket)) < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"agent ipcache at {entries} entries, expected {target}")
            time.sleep(0.5)
        time.sleep(2.0)  # let the agent finish acking and settle
        rss_after = rss_kib(agent_pid)
        entries_after = ipcache_entries(agent_socket)
    grown = entries_after - entries_before
    return {"entries_before": entries_before, "entries_after": entries_after,
            "rss_before_kib": rss_before, "rss_after_kib": rss_after,
            "create_seconds": created,
            "kib_per_endpoint": (rss_after - rss_before) / grown,
            "kib_per_entry_total": rss_after / entries_after}
