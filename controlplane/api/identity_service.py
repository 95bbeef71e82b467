from __future__ import annotations

from collections.abc import Callable

import grpc

from bulkhead.errors import FieldViolation, Invalid, NotFound
from bulkhead.v1 import identity_pb2, identity_pb2_grpc, types_pb2
from controlplane.identity.allocator import AllocatedIdentity, IdentityAllocator
from controlplane.identity.holders import refuse_owned
from controlplane.records import messages

from .errors import rpc

LOOKUP_MANY_MAX = 1024


class IdentityService(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, allocator: IdentityAllocator,
                 remote_labels: Callable[[int], tuple[str, ...] | None] = lambda _: None,
                 ) -> None:
        self.allocator = allocator
        self.remote_labels = remote_labels
        """A connected remote cluster's identity's labels (clustermesh)."""

    @rpc
    async def Allocate(self, request: identity_pb2.AllocateIdentityRequest,
                       context: grpc.aio.ServicerContext) -> types_pb2.Identity:
        refuse_owned(request.holder, "cannot take a reference for")
        return messages.identity(await self.allocator.allocate(list(request.labels),
                                                              request.holder))

    @rpc
    async def Release(self, request: identity_pb2.ReleaseIdentityRequest,
                      context: grpc.aio.ServicerContext) -> identity_pb2.ReleaseIdentityResponse:
        refuse_owned(request.holder, "cannot release the reference of")
        left = await self.allocator.release(request.id, request.holder)
        return identity_pb2.ReleaseIdentityResponse(remaining_references=left)

    @rpc
    async def Lookup(self, request: identity_pb2.LookupIdentityRequest,
                     context: grpc.aio.ServicerContext) -> types_pb2.Identity:
        return messages.identity(self.allocator.lookup(list(request.labels)))

    @rpc
    async def LookupMany(self, request: identity_pb2.LookupIdentitiesRequest,
                         context: grpc.aio.ServicerContext,
                         ) -> identity_pb2.LookupIdentitiesResponse:
        """Lookup for each item; an unknown set is found=false, any invalid set fails the call
        with every problem named lookups[i].<field>."""
        if len(request.lookups) > LOOKUP_MANY_MAX:
            raise Invalid([FieldViolation(
                "lookups", f"at most {LOOKUP_MANY_MAX} lookups per call, got "
                           f"{len(request.lookups)}")])
        results: list[identity_pb2.LookupIdentityResult] = []
        problems: list[FieldViolation] = []
        for i, item in enumerate(request.lookups):
            try:
                ident = self.allocator.lookup(list(item.labels))
            except NotFound:
                results.append(identity_pb2.LookupIdentityResult(found=False))
                continue
            except Invalid as exc:
                problems.extend([FieldViolation(f"lookups[{i}].{v.field}", v.description)
                                 for v in exc.violations]
                                or [FieldViolation(f"lookups[{i}]", exc.message)])
                continue
            results.append(identity_pb2.LookupIdentityResult(found=True,
                                                             identity=messages.identity(ident)))
        if problems:
            raise Invalid(problems)
        return identity_pb2.LookupIdentitiesResponse(results=results)

    @rpc
    async def Get(self, request: identity_pb2.GetIdentityRequest,
                  context: grpc.aio.ServicerContext) -> types_pb2.Identity:
        try:
            return messages.identity(self.allocator.get(request.id))
        except NotFound:
            labels = self.remote_labels(request.id)
            if labels is None:
                raise
            return messages.identity(AllocatedIdentity(request.id, labels))
