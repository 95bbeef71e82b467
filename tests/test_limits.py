"""Oversized and slow clients: the per-call message limit, the deadline of every etcd call
and the cap on concurrent streams per client connection (issue 14)."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bulkhead.v1 import identity_pb2, identity_pb2_grpc
from controlplane.config import Config, from_args
from integration.etcd_process import etcd_process
from tests.conftest import ReplicaFactory, start_replica
from tests.test_bad_input import stored


async def test_a_message_over_the_configured_limit_is_refused_naming_it(
        replicas: ReplicaFactory) -> None:
    replica = await replicas(max_message_bytes=128 << 10)
    stub = identity_pb2_grpc.IdentityServiceStub(replica.channel())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Allocate(identity_pb2.AllocateIdentityRequest(
            labels=["k8s:a=" + "x" * (200 << 10)]))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(128 << 10) in (err.value.details() or "")
    assert await stored(replica) == []
    # Under the limit the same call is served (and refused on its own merits: one label of
    # 100 KiB is over the identity label quota, on its field).
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Allocate(identity_pb2.AllocateIdentityRequest(
            labels=["k8s:a=" + "x" * (100 << 10)]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_limit_flags() -> None:
    config = from_args(["--max-message-bytes", "1048576", "--max-streams-per-peer", "8"])
    assert (config.max_message_bytes, config.max_streams_per_peer) == (1 << 20, 8)
    defaults = from_args([])
    assert (defaults.max_message_bytes, defaults.max_streams_per_peer) == (4 << 20, 1024)
    for bad in (["--max-message-bytes", "1000"], ["--max-streams-per-peer", "0"]):
        with pytest.raises(SystemExit):
            from_args(bad)


async def test_a_stalled_etcd_fails_a_call_naming_the_deadline() -> None:
    """etcd paused (SIGSTOP: connected, never answering): the call ends UNAVAILABLE naming the
    etcd deadline instead of hanging; served again once etcd resumes."""
    with etcd_process() as etcd:
        replica = await start_replica(Config(etcd_endpoints=[etcd.endpoint],
                                             cluster_name=f"s{uuid.uuid4().hex[:8]}",
                                             state_dir=Path("/tmp")))
        assert etcd.process is not None
        pid = etcd.process.pid
        stub = identity_pb2_grpc.IdentityServiceStub(replica.channel())
        try:
            os.kill(pid, signal.SIGSTOP)
            try:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    # The client's own deadline only stops a hung test; the server answers
                    # first, at its etcd deadline.
                    await stub.Allocate(identity_pb2.AllocateIdentityRequest(
                        labels=["k8s:app=stalled"]), timeout=300)
            finally:
                os.kill(pid, signal.SIGCONT)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.details()
            assert "no answer within 5 s" in (err.value.details() or "")
            again = await stub.Allocate(identity_pb2.AllocateIdentityRequest(
                labels=["k8s:app=stalled"]), timeout=60)
            assert again.id
        finally:
            await replica.stop()


def _own_connection(address: str) -> grpc.aio.Channel:
    """A channel on a connection of its own (gRPC otherwise shares one between channels)."""
    return grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])


async def test_streams_per_peer_are_capped(replicas: ReplicaFactory) -> None:
    replica = await replicas(max_streams_per_peer=2)
    channel = _own_connection(replica.address)
    health = health_pb2_grpc.HealthStub(channel)
    watches = [health.Watch(health_pb2.HealthCheckRequest()) for _ in range(2)]
    for watch in watches:
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
    extra = health.Watch(health_pb2.HealthCheckRequest())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await extra.read()
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "--max-streams-per-peer 2" in (err.value.details() or "")
    # Unary calls are not counted; another connection has its own count.
    assert (await health.Check(health_pb2.HealthCheckRequest())).status == \
        health_pb2.HealthCheckResponse.SERVING
    other = _own_connection(replica.address)
    other_watch = health_pb2_grpc.HealthStub(other).Watch(health_pb2.HealthCheckRequest())
    assert (await other_watch.read()).status == health_pb2.HealthCheckResponse.SERVING
    # A stream closed frees its place.
    watches[0].cancel()
    await _eventually_admitted(health)
    for call in [*watches, other_watch]:
        call.cancel()
    await channel.close()
    await other.close()


async def _eventually_admitted(health: health_pb2_grpc.HealthStub) -> None:
    for _ in range(100):
        call = health.Watch(health_pb2.HealthCheckRequest())
        try:
            await call.read()
            call.cancel()
            return
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await asyncio.sleep(0.05)
    raise AssertionError("a closed stream never freed its place")
