from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from bulkhead.errors import BulkheadError
from bulkhead.rpcerror import abort
from bulkhead.v1 import flow_pb2, observer_pb2, observer_pb2_grpc
from controlplane.observe.relay import FlowRelay

from .errors import rpc


class ObserverService(observer_pb2_grpc.ObserverServiceServicer):
    def __init__(self, relay: FlowRelay) -> None:
        self.relay = relay

    async def GetFlows(self, request: flow_pb2.GetFlowsRequest,  # type: ignore[override]
                       context: grpc.aio.ServicerContext) -> AsyncIterator[flow_pb2.Flow]:
        try:
            for flow in await self.relay.last(request):
                yield flow
            if request.follow:
                async for flow in self.relay.follow(request):
                    yield flow
        except BulkheadError as exc:
            await abort(context, exc)

    @rpc
    async def ObserverStatus(self, request: observer_pb2.ObserverStatusRequest,
                             context: grpc.aio.ServicerContext
                             ) -> observer_pb2.ObserverStatusResponse:
        return await self.relay.status()
