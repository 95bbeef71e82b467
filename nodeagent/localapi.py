"""AgentService on the agent's unix socket: a thin layer over the agent's objects (the agent
hands it the parts it reads; nodeagent.agent wires them).

Every datapath read runs on the datapath thread; errors become gRPC statuses with field
violations (bulkhead.rpcerror), anything unexpected INTERNAL with the traceback in the log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from bulkhead.errors import FieldViolation, Invalid, NotFound
from bulkhead.rpcerror import servicer_method
from bulkhead.v1 import agent_pb2, agent_pb2_grpc, flow_pb2, types_pb2
from nodeagent import dumps
from nodeagent.datapath import Datapath
from nodeagent.endpoints import EndpointTable, LocalEndpoint
from nodeagent.flowstore import FlowStore, Labels, matcher
from nodeagent.manager import EndpointManager
from nodeagent.worker import Worker

MAPS = ("endpoints", "ipcache", "policy", "ct", "tunnel", "counters", "lb")


rpc = servicer_method("agent")


class AgentService(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, node: str, *, worker: Worker, dp: Datapath, table: EndpointTable,
                 manager: EndpointManager, flows: FlowStore, labels: Labels,
                 status: Callable[[], Awaitable[agent_pb2.AgentStatusResponse]]) -> None:
        self.node = node
        self.worker = worker
        self.dp = dp
        self.table = table
        self.manager = manager
        self.flows = flows
        self.labels = labels
        self.status = status

    def _message(self, ep: LocalEndpoint, ingress: bool, egress: bool) -> agent_pb2.AgentEndpoint:
        return agent_pb2.AgentEndpoint(
            endpoint_id=ep.ep_id, namespace=ep.namespace, name=ep.name, labels=ep.labels,
            identity=ep.identity, ipv4=ep.ip, host_ifname=ep.host_ifname,
            netns_path=ep.netns_path, ingress_enforced=ingress, egress_enforced=egress,
            status=ep.status, ports=[types_pb2.EndpointPort(name=n, port=p, protocol=proto)
                                     for n, p, proto in ep.ports])

    async def _flags(self) -> dict[int, tuple[bool, bool]]:
        infos = await self.worker.run(self.dp.endpoints)
        return {i.ep_id: (i.ingress_enforced, i.egress_enforced) for i in infos}

    @rpc
    async def AddEndpoint(self, request: agent_pb2.AddEndpointRequest,
                          context: grpc.aio.ServicerContext) -> agent_pb2.AgentEndpoint:
        ep = await self.manager.add(request.netns_path, request.name, request.namespace,
                                    list(request.labels),
                                    [(p.name, p.port, p.protocol) for p in request.ports])
        flags = (await self._flags()).get(ep.ep_id, (False, False))
        return self._message(ep, *flags)

    @rpc
    async def DeleteEndpoint(self, request: agent_pb2.DeleteAgentEndpointRequest,
                             context: grpc.aio.ServicerContext
                             ) -> agent_pb2.DeleteAgentEndpointResponse:
        await self.manager.delete(request.namespace, request.name)
        return agent_pb2.DeleteAgentEndpointResponse()

    @rpc
    async def ListEndpoints(self, request: agent_pb2.ListAgentEndpointsRequest,
                            context: grpc.aio.ServicerContext
                            ) -> agent_pb2.ListAgentEndpointsResponse:
        flags = await self._flags()
        return agent_pb2.ListAgentEndpointsResponse(endpoints=[
            self._message(ep, *flags.get(ep.ep_id, (False, False)))
            for ep in self.table.all()])

    @rpc
    async def DumpMap(self, request: agent_pb2.DumpMapRequest,
                      context: grpc.aio.ServicerContext) -> agent_pb2.DumpMapResponse:
        dp, run, labels = self.dp, self.worker.run, self.labels
        name = request.map
        if name in ("policy", "counters"):
            ep_id = self._endpoint_id(request.endpoint, required=name == "policy")
            if name == "policy":
                assert ep_id is not None
                cols, rows, size = await run(dumps.policy, dp, ep_id, labels)
            else:
                cols, rows, size = await run(dumps.counters, dp, ep_id)
        elif name == "endpoints":
            cols, rows, size = await run(dumps.endpoints, dp)
        elif name == "ipcache":
            cols, rows, size = await run(dumps.ipcache, dp)
        elif name == "ct":
            cols, rows, size = await run(dumps.ct, dp)
        elif name in ("tunnel", "tunnels"):
            cols, rows, size = await run(dumps.tunnels, dp)
        elif name == "lb":
            cols, rows, size = await run(dumps.lb, dp)
        else:
            raise Invalid([FieldViolation("map", f"must be one of {', '.join(MAPS)}, "
                                                 f"got {name!r}")])
        return agent_pb2.DumpMapResponse(
            columns=cols, rows=[agent_pb2.MapRow(fields=r) for r in rows], max_entries=size)

    def _endpoint_id(self, ref: str, *, required: bool) -> int | None:
        if not ref:
            if required:
                raise Invalid([FieldViolation("endpoint", "required: an endpoint id or ns/name")])
            return None
        ep = self.table.resolve(ref)
        if ep is None:
            if ref.isdigit():  # a pinned id the table does not name (still restoring)
                return int(ref)
            raise NotFound(f"no endpoint {ref!r} on node {self.node}")
        return ep.ep_id

    async def GetFlows(self, request: flow_pb2.GetFlowsRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[flow_pb2.Flow]:
        flows = self.flows
        match = matcher(request.filter, request.after_sequence)
        queue = flows.follow() if request.follow else None
        try:
            for flow in flows.last(request.last, match):
                yield flow
            if queue is None:
                return
            while True:
                new = await queue.get()
                if new is None:  # too slow: cut off so the client can resume by sequence
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                        "flow follower fell behind; resume with "
                                        "after_sequence")
                    return
                if match(new):
                    yield new
        finally:
            if queue is not None:
                flows.unfollow(queue)

    @rpc
    async def AgentStatus(self, request: agent_pb2.AgentStatusRequest,
                          context: grpc.aio.ServicerContext) -> agent_pb2.AgentStatusResponse:
        return await self.status()
