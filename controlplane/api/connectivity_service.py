"""ConnectivityService on the control plane: thin, over controlplane.connectivity (the relay
to the agents and the test lock)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from bulkhead.errors import BulkheadError
from bulkhead.rpcerror import abort
from bulkhead.v1 import connectivity_pb2 as pb
from bulkhead.v1 import connectivity_pb2_grpc
from controlplane import callers
from controlplane.connectivity.lock import ConnectivityLock
from controlplane.connectivity.relay import ConnectivityRelay

from .errors import rpc


class ConnectivityService(connectivity_pb2_grpc.ConnectivityServiceServicer):
    def __init__(self, relay: ConnectivityRelay, lock: ConnectivityLock) -> None:
        self.relay = relay
        self.lock = lock

    async def HoldTestLock(self, request: pb.HoldTestLockRequest,  # type: ignore[override]
                           context: grpc.aio.ServicerContext) -> AsyncIterator[pb.TestLock]:
        """Held until the caller closes the call or goes away (gRPC cancels this task, and
        the lock's block releases it)."""
        caller = callers.current().name
        holder = f"{request.holder} ({caller})" if caller else request.holder
        try:
            async with self.lock.held(holder) as (me, keeper):
                yield pb.TestLock(holder=me.holder, since_ns=me.since_ns, replica=me.replica,
                                  ttl_seconds=self.lock.ttl)
                await asyncio.shield(keeper)   # runs until cancelled; raises if the lease is lost
        except BulkheadError as exc:
            await abort(context, exc)

    @rpc
    async def CreateTestPod(self, request: pb.CreateTestPodRequest,
                            context: grpc.aio.ServicerContext) -> pb.TestPod:
        return await self.relay.create(request)

    @rpc
    async def RunProbe(self, request: pb.ProbeRequest,
                       context: grpc.aio.ServicerContext) -> pb.ProbeResult:
        return await self.relay.probe(request)

    @rpc
    async def CleanupTestPods(self, request: pb.CleanupTestPodsRequest,
                              context: grpc.aio.ServicerContext) -> pb.CleanupTestPodsResponse:
        return await self.relay.cleanup(request)
