"""Relays ConnectivityService calls to the agent of the node they name, over the channel the
flow relay keeps to every agent's TCP API (mutual TLS with --tls). An agent's refusal comes
back as it was (its code and field violations), prefixed with the node's name."""

from __future__ import annotations

import asyncio

import grpc

from bulkhead.errors import (
    BulkheadError,
    FailedPrecondition,
    FieldViolation,
    Invalid,
    NotFound,
    Unavailable,
)
from bulkhead.rpcerror import domain_error
from bulkhead.v1 import connectivity_pb2 as pb
from bulkhead.v1 import connectivity_pb2_grpc
from controlplane.nodes.registry import NodeRegistry
from controlplane.observe.relay import AGENT_TIMEOUT, FlowRelay
from controlplane.records.codec import Node

CREATE_TIMEOUT = 90.0
"""An agent's AddEndpoint waits for the control plane and for the pod's policy."""
PROBE_MARGIN = 20.0


class ConnectivityRelay:
    def __init__(self, nodes: NodeRegistry, flows: FlowRelay) -> None:
        self.nodes = nodes
        self.flows = flows

    def _node(self, name: str) -> Node:
        if not name:
            raise Invalid([FieldViolation("node", "required")])
        node = self.nodes.cached(name)
        if node is None:
            raise NotFound(f"no node {name!r}")
        if not node.agent_address:
            raise FailedPrecondition(f"node {name!r} has no agent API address (is its agent "
                                     "running?)")
        return node

    async def _stub(self, node: Node) -> connectivity_pb2_grpc.ConnectivityServiceStub:
        try:
            channel = await self.flows.agent_channel(node)
        except (TimeoutError, ConnectionError):
            raise Unavailable(f"the agent of node {node.name!r} at {node.agent_address} is "
                              f"not reachable (within {AGENT_TIMEOUT:g} s)") from None
        return connectivity_pb2_grpc.ConnectivityServiceStub(channel)

    async def create(self, request: pb.CreateTestPodRequest) -> pb.TestPod:
        node = self._node(request.node)
        stub = await self._stub(node)
        try:
            return await stub.CreateTestPod(request, timeout=CREATE_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc, f"node {node.name}: ") from None

    async def probe(self, request: pb.ProbeRequest) -> pb.ProbeResult:
        node = self._node(request.node)
        stub = await self._stub(node)
        try:
            return await stub.RunProbe(request, timeout=(request.timeout_seconds or 2.0)
                                       + PROBE_MARGIN)
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc, f"node {node.name}: ") from None

    async def cleanup(self, request: pb.CleanupTestPodsRequest) -> pb.CleanupTestPodsResponse:
        """One node, or (no node named) every node with an agent, each reported apart."""
        if request.node:
            targets = [self._node(request.node)]
        else:
            targets = [n for n in self.nodes.nodes() if n.agent_address]

        async def one(node: Node) -> pb.NodeCleanup:
            try:
                stub = await self._stub(node)
                done = await stub.CleanupTestPods(pb.CleanupTestPodsRequest(node=node.name),
                                                  timeout=CREATE_TIMEOUT)
            except BulkheadError as exc:
                return pb.NodeCleanup(node=node.name, error=str(exc))
            except grpc.aio.AioRpcError as exc:
                return pb.NodeCleanup(node=node.name, error=exc.details() or exc.code().name)
            return pb.NodeCleanup(node=node.name,
                                  removed=[r for n in done.nodes for r in n.removed])

        return pb.CleanupTestPodsResponse(
            nodes=await asyncio.gather(*(one(n) for n in targets)))
