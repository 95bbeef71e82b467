from __future__ import annotations

import grpc

from bulkhead.v1 import identity_pb2, identity_pb2_grpc, types_pb2
from controlplane.identity.allocator import IdentityAllocator

from . import convert
from .errors import rpc


class IdentityService(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, allocator: IdentityAllocator) -> None:
        self.allocator = allocator

    @rpc
    async def Allocate(self, request: identity_pb2.AllocateIdentityRequest,
                       context: grpc.aio.ServicerContext) -> types_pb2.Identity:
        return convert.identity(await self.allocator.allocate(list(request.labels),
                                                              request.holder))

    @rpc
    async def Release(self, request: identity_pb2.ReleaseIdentityRequest,
                      context: grpc.aio.ServicerContext) -> identity_pb2.ReleaseIdentityResponse:
        left = await self.allocator.release(request.id, request.holder)
        return identity_pb2.ReleaseIdentityResponse(remaining_references=left)

    @rpc
    async def Lookup(self, request: identity_pb2.LookupIdentityRequest,
                     context: grpc.aio.ServicerContext) -> types_pb2.Identity:
        return convert.identity(self.allocator.lookup(list(request.labels)))

    @rpc
    async def Get(self, request: identity_pb2.GetIdentityRequest,
                  context: grpc.aio.ServicerContext) -> types_pb2.Identity:
        return convert.identity(self.allocator.get(request.id))
