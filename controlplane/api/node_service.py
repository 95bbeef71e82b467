from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc

from bulkhead.v1 import node_pb2, node_pb2_grpc, nodelabels_pb2, nodelabels_pb2_grpc, types_pb2
from controlplane import callers
from controlplane.nodes.registry import NodeRegistry
from controlplane.records import messages

from .errors import rpc


class NodeService(node_pb2_grpc.NodeServiceServicer):
    def __init__(self, registry: NodeRegistry,
                 revoke: Callable[[str], Awaitable[object]] | None = None) -> None:
        self.registry = registry
        self.revoke = revoke
        """With TLS (the default): an admin deleting a node also revokes its certificates."""

    @rpc
    async def Register(self, request: node_pb2.RegisterNodeRequest,
                       context: grpc.aio.ServicerContext) -> types_pb2.Node:
        return messages.node(await self.registry.register(request.name, request.underlay_ip,
                                                           request.agent_address,
                                                           list(request.labels)))

    @rpc
    async def Heartbeat(self, request: node_pb2.HeartbeatRequest,
                        context: grpc.aio.ServicerContext) -> node_pb2.HeartbeatResponse:
        return node_pb2.HeartbeatResponse(ttl_seconds=await self.registry.heartbeat(request.name))

    @rpc
    async def Deregister(self, request: node_pb2.DeregisterNodeRequest,
                         context: grpc.aio.ServicerContext) -> node_pb2.DeregisterNodeResponse:
        await self.registry.deregister(request.name)
        if self.revoke is not None and callers.current().role == callers.ADMIN:
            await self.revoke(request.name)
        return node_pb2.DeregisterNodeResponse()


class NodeLabelService(nodelabels_pb2_grpc.NodeLabelServiceServicer):
    """`bulkhead node label`: the operator's node labels (what host policies select)."""

    def __init__(self, registry: NodeRegistry) -> None:
        self.registry = registry

    @rpc
    async def Label(self, request: nodelabels_pb2.LabelNodeRequest,
                    context: grpc.aio.ServicerContext) -> types_pb2.Node:
        return messages.node(await self.registry.label(request.name, list(request.add),
                                                       list(request.remove)))
