from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from bulkhead import labelmatch
from bulkhead.reserved import RESERVED_BY_ID
from bulkhead.v1 import admin_pb2, admin_pb2_grpc, types_pb2
from controlplane.endpoints.registry import EndpointRegistry
from controlplane.identity.allocator import AllocatedIdentity, IdentityAllocator
from controlplane.identity.index import IdentityIndex
from controlplane.nodes.registry import NodeRegistry
from controlplane.records import messages
from controlplane.records.codec import Endpoint

from .errors import rpc
from .pagination import paginate
from .status import StatusReporter


class AdminService(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, status: StatusReporter, *, allocator: IdentityAllocator,
                 identities: IdentityIndex, nodes: NodeRegistry, endpoints: EndpointRegistry,
                 enforcement: Callable[[int], tuple[bool, bool]],
                 remote: Callable[[str], list[Any]] = lambda _kind: []) -> None:
        self.status = status
        self.remote = remote
        """Connected remote clusters' nodes, ipcache entries or identities (clustermesh)."""
        self.allocator = allocator
        self.identities = identities
        self.nodes = nodes
        self.endpoints = endpoints
        self.enforcement = enforcement

    @rpc
    async def Status(self, request: admin_pb2.StatusRequest,
                     context: grpc.aio.ServicerContext) -> admin_pb2.StatusResponse:
        return await self.status.report()

    @rpc
    async def ListIdentities(self, request: admin_pb2.ListIdentitiesRequest,
                             context: grpc.aio.ServicerContext
                             ) -> admin_pb2.ListIdentitiesResponse:
        index = self.identities
        wanted = list(request.label_selector)
        items = [self.allocator.get(i) for i in RESERVED_BY_ID]
        items += [AllocatedIdentity(s.id, s.labels, index.references(s.id))
                  for s in index.by_id.values()]
        items += [AllocatedIdentity(r.id, r.labels) for r in self.remote("identity")]
        items = [i for i in items if labelmatch.matches_all(wanted, i.labels)]
        page, token = paginate(items, lambda i: f"{i.id:010d}", request.page_size,
                               request.page_token, listing="identities",
                               render=messages.identity)
        return admin_pb2.ListIdentitiesResponse(identities=page, next_page_token=token)

    @rpc
    async def ListNodes(self, request: admin_pb2.ListNodesRequest,
                        context: grpc.aio.ServicerContext) -> admin_pb2.ListNodesResponse:
        nodes = [*self.nodes.nodes(), *self.remote("node")]
        page, token = paginate(nodes, lambda n: n.name, request.page_size,
                               request.page_token, listing="nodes", render=messages.node)
        return admin_pb2.ListNodesResponse(nodes=page, next_page_token=token)

    @rpc
    async def ListEndpoints(self, request: admin_pb2.ListEndpointsRequest,
                            context: grpc.aio.ServicerContext) -> admin_pb2.ListEndpointsResponse:
        items = [e for e in self.endpoints.endpoints()
                 if (not request.node or e.node == request.node)
                 and (not request.namespace or e.namespace == request.namespace)
                 and (not request.identity or e.identity == request.identity)]
        enforcement = self.enforcement

        def render(e: Endpoint) -> types_pb2.Endpoint:
            message = messages.endpoint(e)
            message.ingress_enforced, message.egress_enforced = enforcement(e.identity)
            return message

        page, token = paginate(items, lambda e: f"{e.namespace}/{e.name}", request.page_size,
                               request.page_token, listing="endpoints", render=render)
        return admin_pb2.ListEndpointsResponse(endpoints=page, next_page_token=token)

    @rpc
    async def ListIPCache(self, request: admin_pb2.ListIPCacheRequest,
                          context: grpc.aio.ServicerContext) -> admin_pb2.ListIPCacheResponse:
        items = [e for e in [*self.endpoints.ipcache(), *self.remote("ipcache")]
                 if (not request.node or e.node == request.node)
                 and (not request.identity or e.identity == request.identity)]
        page, token = paginate(items, lambda e: e.prefix, request.page_size, request.page_token,
                               listing="ipcache", render=messages.ipcache)
        return admin_pb2.ListIPCacheResponse(entries=page, next_page_token=token)
