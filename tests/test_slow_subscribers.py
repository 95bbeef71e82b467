"""Agents that open a subscription and never read do not exhaust the control plane: each
stream's queue is bounded (--subscription-queue-bytes), a stream that falls that far behind is
cut (Reset SLOW_CONSUMER, the call ends), and the replica's memory stays bounded while the
cluster churns. Measured on a replica in its own process (its RSS), against a bound derived
from the configured per-stream buffer (issue 14)."""

from __future__ import annotations

import asyncio
import uuid

import grpc

from bulkhead.v1 import (
    identity_pb2,
    identity_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
)
from controlplane.subscription.subscriber import MAX_MESSAGE
from integration.etcd_process import etcd_process
from tests.conftest import eventually
from tests.procserver import replica_process

STREAMS = 32
QUEUE_BYTES = 256 << 10
"""--subscription-queue-bytes of the replica under test."""
PER_STREAM = QUEUE_BYTES + 2 * MAX_MESSAGE
"""What one stream may hold: its queue, and one batch (at most 1 MiB) in flight, counted
twice (the Python bytes and gRPC's copy being written)."""
SLACK = 32 << 20
"""The allocator's own slack (arenas, fragmentation) on top of everything counted."""
IDENTITIES = 600
"""New identities per churn phase; each is a delta of about 5 KB sent to every agent, about
3 MiB per stream per phase: more than ten times a stream's queue."""


def labels(phase: int, i: int) -> list[str]:
    """About 5 KB of labels: a large delta per identity (within the label quota)."""
    return [f"k8s:k{j:02d}-{'x' * 50}=p{phase}i{i}-{'v' * 50}" for j in range(48)]


async def churn(channel: grpc.aio.Channel, phase: int) -> None:
    stub = identity_pb2_grpc.IdentityServiceStub(channel)
    gate = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        async with gate:
            await stub.Allocate(identity_pb2.AllocateIdentityRequest(labels=labels(phase, i)),
                                timeout=120)

    await asyncio.gather(*(one(i) for i in range(IDENTITIES)))


async def test_never_reading_subscribers_are_cut_and_memory_stays_bounded() -> None:
    cluster = f"slow{uuid.uuid4().hex[:8]}"
    with etcd_process() as etcd, replica_process(
            etcd.endpoint, cluster, subscription_queue_bytes=QUEUE_BYTES, node_ttl=3600,
            identity_gc_grace=3600.0) as replica:
        channel = grpc.aio.insecure_channel(replica.address)
        nodes = node_pb2_grpc.NodeServiceStub(channel)
        names = [f"slow-{i}" for i in range(STREAMS)]
        for i, name in enumerate(names):
            await nodes.Register(node_pb2.RegisterNodeRequest(
                name=name, underlay_ip=f"192.0.2.{i + 1}"), timeout=60)
        await churn(channel, 0)  # warm-up: caches, history and code paths exist before
        start = replica.rss_bytes()

        # The same churn without subscribers: what it costs the replica by itself.
        await churn(channel, 1)
        alone = replica.rss_bytes() - start

        # Never-reading agents, each on its own connection: Hello, then nothing is read.
        connections = [grpc.aio.insecure_channel(
            replica.address, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in names]
        calls = []
        for connection, name in zip(connections, names, strict=True):
            call = subscription_pb2_grpc.SubscriptionServiceStub(connection).Subscribe()
            await call.write(subscription_pb2.AgentMessage(
                hello=subscription_pb2.Hello(node=name)))
            calls.append(call)
        admin = subscription_pb2_grpc.SubscriptionAdminServiceStub(channel)

        async def connected() -> set[str]:
            listed = await admin.ListSubscriptions(subscription_pb2.ListSubscriptionsRequest(),
                                                   timeout=60)
            return {s.name for s in listed.subscriptions if s.connected}

        assert await eventually(lambda: _equal(connected(), set(names)), timeout=60)
        before_streams = replica.rss_bytes()
        await churn(channel, 2)
        with_streams = replica.rss_bytes() - before_streams

        # Every never-reading stream was cut (its queue went over the bound) ...
        assert await eventually(lambda: _equal(connected(), set()), timeout=60), \
            "a never-reading subscriber is still connected"
        assert replica.alive()
        bound = max(alone, 0) + STREAMS * PER_STREAM + SLACK
        print(f"\nslow subscribers: {STREAMS} never-reading streams, queue "
              f"{QUEUE_BYTES >> 10} KiB each; RSS growth over a churn of {IDENTITIES} "
              f"identities: {with_streams / (1 << 20):.1f} MiB with the streams, "
              f"{alone / (1 << 20):.1f} MiB without; bound {bound / (1 << 20):.1f} MiB "
              f"({STREAMS} x {PER_STREAM / (1 << 20):.2f} MiB + the churn alone + "
              f"{SLACK >> 20} MiB)")
        # ... and the memory they cost stayed within what their buffers allow.
        assert with_streams <= bound
        for call in calls:
            call.cancel()
        for connection in connections:
            await connection.close()
        await channel.close()


async def _equal(found: object, expected: set[str]) -> bool:
    return await found == expected  # type: ignore[misc]
