"""ConnectivityService on the control plane: thin, over controlplane.connectivity.relay."""

from __future__ import annotations

import grpc

from bulkhead.v1 import connectivity_pb2 as pb
from bulkhead.v1 import connectivity_pb2_grpc
from controlplane.connectivity.relay import ConnectivityRelay

from .errors import rpc


class ConnectivityService(connectivity_pb2_grpc.ConnectivityServiceServicer):
    def __init__(self, relay: ConnectivityRelay) -> None:
        self.relay = relay

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
