"""ServiceService: thin over `controlplane.servicestore.store.ServiceStore`."""

from __future__ import annotations

import grpc

from bulkhead.v1 import service_pb2 as pb
from bulkhead.v1 import service_pb2_grpc, types_pb2
from controlplane.servicestore.store import ServiceStore

from .errors import rpc


class ServiceService(service_pb2_grpc.ServiceServiceServicer):
    def __init__(self, store: ServiceStore) -> None:
        self.store = store

    @rpc
    async def Apply(self, request: pb.ApplyServicesRequest,
                    context: grpc.aio.ServicerContext) -> pb.ApplyServicesResponse:
        result = await self.store.apply(request.yaml)
        return pb.ApplyServicesResponse(
            services=[pb.AppliedService(service=a.service, action=a.action)
                      for a in result.applied],
            revision=result.revision, notes=result.notes)

    @rpc
    async def List(self, request: pb.ListServicesRequest,
                   context: grpc.aio.ServicerContext) -> pb.ListServicesResponse:
        return pb.ListServicesResponse(services=self.store.services(request.namespace))

    @rpc
    async def Get(self, request: pb.GetServiceRequest,
                  context: grpc.aio.ServicerContext) -> types_pb2.Service:
        return self.store.get(request.service.namespace, request.service.name)

    @rpc
    async def Delete(self, request: pb.DeleteServiceRequest,
                     context: grpc.aio.ServicerContext) -> pb.DeleteServiceResponse:
        revision = await self.store.delete(request.service.namespace, request.service.name)
        return pb.DeleteServiceResponse(revision=revision)
