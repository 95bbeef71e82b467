from __future__ import annotations

import grpc

from bulkhead.v1 import endpoint_pb2, endpoint_pb2_grpc, types_pb2
from controlplane import callers
from controlplane.endpoints.registry import EndpointRegistry
from controlplane.records import messages

from .errors import rpc


class EndpointService(endpoint_pb2_grpc.EndpointServiceServicer):
    def __init__(self, registry: EndpointRegistry) -> None:
        self.registry = registry

    @rpc
    async def Create(self, request: endpoint_pb2.CreateEndpointRequest,
                     context: grpc.aio.ServicerContext) -> types_pb2.Endpoint:
        return messages.endpoint(await self.registry.create(
            request.node, request.namespace, request.name, list(request.labels), request.ip,
            messages.endpoint_ports(request.ports)))

    @rpc
    async def Delete(self, request: endpoint_pb2.DeleteEndpointRequest,
                     context: grpc.aio.ServicerContext) -> endpoint_pb2.DeleteEndpointResponse:
        await self.registry.delete(request.namespace, request.name, callers.current())
        return endpoint_pb2.DeleteEndpointResponse()

    @rpc
    async def Get(self, request: endpoint_pb2.GetEndpointRequest,
                  context: grpc.aio.ServicerContext) -> types_pb2.Endpoint:
        return messages.endpoint(await self.registry.get(request.namespace, request.name))
