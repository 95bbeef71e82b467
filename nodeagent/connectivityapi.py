"""ConnectivityService on the agent (both its doors: the unix socket, and the TCP port the
control plane relays through): a thin layer over nodeagent.testpods."""

from __future__ import annotations

import grpc

from bulkhead.errors import FieldViolation, Invalid
from bulkhead.rpcerror import servicer_method
from bulkhead.v1 import connectivity_pb2 as pb
from bulkhead.v1 import connectivity_pb2_grpc
from nodeagent.testpods import TestPods

rpc = servicer_method("agent")


class ConnectivityAgentService(connectivity_pb2_grpc.ConnectivityServiceServicer):
    def __init__(self, node: str, pods: TestPods) -> None:
        self.node = node
        self.pods = pods

    def _this_node(self, node: str) -> None:
        if node and node != self.node:
            raise Invalid([FieldViolation("node", f"this agent serves node {self.node!r}, "
                                                  f"not {node!r}")])

    @rpc
    async def CreateTestPod(self, request: pb.CreateTestPodRequest,
                            context: grpc.aio.ServicerContext) -> pb.TestPod:
        self._this_node(request.node)
        return await self.pods.create(request.name, list(request.labels),
                                      list(request.serve_ports))

    @rpc
    async def RunProbe(self, request: pb.ProbeRequest,
                       context: grpc.aio.ServicerContext) -> pb.ProbeResult:
        self._this_node(request.node)
        return await self.pods.probe(request)

    @rpc
    async def CleanupTestPods(self, request: pb.CleanupTestPodsRequest,
                              context: grpc.aio.ServicerContext) -> pb.CleanupTestPodsResponse:
        self._this_node(request.node)
        removed = await self.pods.cleanup()
        return pb.CleanupTestPodsResponse(nodes=[pb.NodeCleanup(node=self.node,
                                                                removed=removed)])
