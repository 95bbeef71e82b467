"""Reads flows from every node's agent (the agent API on each node's `agent_address`).

Any replica can serve any observer: the node list comes from etcd. A follow stream keeps going
when an agent restarts: it reconnects, re-reads what the agent holds and drops what it already
sent, keyed by the agent's (boot id, sequence), so nothing is duplicated and nothing the agent
still holds is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import grpc

from bulkhead import flowfilter, log, tls
from bulkhead.v1 import agent_pb2, agent_pb2_grpc, flow_pb2, observer_pb2
from controlplane.nodes.registry import NodeRegistry
from controlplane.records.codec import Node

from .enrich import FlowEnricher

_log = log.get(__name__)
NODE_POLL = 1.0
AGENT_TIMEOUT = 2.0
"""Longest wait for an agent to connect and answer a status call, or to connect for a flow
read: an unreachable agent (its address dropped, or a port that never speaks gRPC) costs a
status or observe call this much, not the 20 s of gRPC's connection timeout."""
FLOWS_TIMEOUT = 10.0


class FlowRelay:
    def __init__(self, nodes: NodeRegistry, enricher: FlowEnricher) -> None:
        self.nodes = nodes
        self.enricher = enricher
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._rate_sample: tuple[float, int] | None = None
        self.credentials: tls.Pem | None = None
        """TLS (the default): the control plane's certificate, presented to agents (whose TCP API
        accepts only it); agents are checked against the cluster CA, by node name."""

    def _channel(self, address: str, node: str = "") -> grpc.aio.Channel:
        key = f"{node}@{address}"
        channel = self._channels.get(key)
        if channel is None:
            options = [("grpc.ssl_target_name_override", node)] if self.credentials else []
            channel = self._channels[key] = tls.aio_channel(address, self.credentials,
                                                            options)
        return channel

    def _stub(self, address: str, node: str = "") -> agent_pb2_grpc.AgentServiceStub:
        return agent_pb2_grpc.AgentServiceStub(self._channel(address, node))

    async def _connected(self, address: str, node: str = ""
                         ) -> agent_pb2_grpc.AgentServiceStub:
        """The agent's stub once its channel is connected. ConnectionError at once when the
        connection fails (as a call would), TimeoutError when connecting takes longer than
        AGENT_TIMEOUT (a port that accepts and never speaks gRPC)."""
        channel = self._channel(address, node)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + AGENT_TIMEOUT
        state = channel.get_state(try_to_connect=True)
        while state != grpc.ChannelConnectivity.READY:
            if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                         grpc.ChannelConnectivity.SHUTDOWN):
                raise ConnectionError("cannot connect")
            await asyncio.wait_for(channel.wait_for_state_change(state), deadline - loop.time())
            state = channel.get_state(try_to_connect=True)
        return agent_pb2_grpc.AgentServiceStub(channel)

    async def agent_channel(self, node: Node) -> grpc.aio.Channel:
        """The connected channel to a node's agent API, for other relays (connectivity
        tests); the same errors as `_connected`."""
        await self._connected(node.agent_address, node.name)
        return self._channel(node.agent_address, node.name)

    def _observed(self, node_filter: str) -> list[Node]:
        return [n for n in self.nodes.nodes()
                if n.agent_address and (not node_filter or n.name == node_filter)]

    @staticmethod
    def _agent_filter(f: flow_pb2.FlowFilter) -> flow_pb2.FlowFilter:
        """What the agent can filter itself (no names or labels of remote peers; the service
        a flow was sent to is named by the agent, so `to_service` stays)."""
        narrowed = flow_pb2.FlowFilter()
        narrowed.CopyFrom(f)
        for name in ("from_labels", "to_labels"):
            narrowed.ClearField(name)  # type: ignore[arg-type]
        narrowed.from_pod = narrowed.to_pod = ""
        return narrowed

    def _accept(self, flow: flow_pb2.Flow, f: flow_pb2.FlowFilter) -> bool:
        self.enricher.enrich(flow)
        return flowfilter.matches(flow, f)

    async def last(self, request: flow_pb2.GetFlowsRequest) -> list[flow_pb2.Flow]:
        """The newest `last` matching flows held by all agents, oldest first."""
        ask = flow_pb2.GetFlowsRequest(last=0xFFFFFFFF if flowfilter.needs_enrichment(
            request.filter) else request.last, filter=self._agent_filter(request.filter))

        async def one(node: Node) -> list[flow_pb2.Flow]:
            try:
                stub = await self._connected(node.agent_address, node.name)
                return [f async for f in stub.GetFlows(ask, timeout=FLOWS_TIMEOUT)]
            except TimeoutError:
                _log.warning("agent flows unavailable", node=node.name,
                             error=f"no connection within {AGENT_TIMEOUT:g} s")
            except ConnectionError as exc:
                _log.warning("agent flows unavailable", node=node.name, error=str(exc))
            except grpc.aio.AioRpcError as exc:
                _log.warning("agent flows unavailable", node=node.name, error=exc.details())
            return []

        found = await asyncio.gather(*(one(n) for n in self._observed(request.filter.node)))
        flows = [f for batch in found for f in batch if self._accept(f, request.filter)]
        flows.sort(key=lambda f: f.time_ns)
        return flows[-request.last:] if request.last else []

    async def follow(self, request: flow_pb2.GetFlowsRequest) -> AsyncIterator[flow_pb2.Flow]:
        """New matching flows from every node, as they come, across agent restarts."""
        queue: asyncio.Queue[flow_pb2.Flow] = asyncio.Queue(maxsize=10_000)
        followers: dict[str, asyncio.Task[None]] = {}
        loop = asyncio.get_running_loop()
        refresh_at = loop.time()
        try:
            while True:
                # New (or restarted) nodes are picked up once per NODE_POLL, not per flow:
                # listing the nodes decodes and sorts every node record.
                now = loop.time()
                if now >= refresh_at:
                    for node in self._observed(request.filter.node):
                        task = followers.get(node.name)
                        if task is None or task.done():
                            followers[node.name] = asyncio.create_task(
                                self._follow_node(node, request.filter, queue))
                    refresh_at = now + NODE_POLL
                try:
                    flow = queue.get_nowait()
                except asyncio.QueueEmpty:
                    # Only an idle stream waits with a timeout (until the next refresh).
                    try:
                        flow = await asyncio.wait_for(queue.get(), refresh_at - now)
                    except TimeoutError:
                        continue
                yield flow
        finally:
            for task in followers.values():
                task.cancel()
            for task in followers.values():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _follow_node(self, node: Node, f: flow_pb2.FlowFilter,
                           queue: asyncio.Queue[flow_pb2.Flow]) -> None:
        boot, sequence = "", 0
        first = True
        backoff = 0.2
        while True:
            # The first connection starts at "now"; a reconnection re-reads what the agent
            # holds and skips what was sent before its restart or our disconnection.
            ask = flow_pb2.GetFlowsRequest(last=0 if first else 0xFFFFFFFF, follow=True,
                                           filter=self._agent_filter(f))
            # A restarted agent may serve on a new address: take the node's current record.
            current = self.nodes.cached(node.name)
            address = current.agent_address if current else node.agent_address
            try:
                async for flow in self._stub(address, node.name).GetFlows(ask):
                    backoff = 0.2
                    if flow.boot_id == boot and flow.sequence <= sequence:
                        continue
                    boot, sequence = flow.boot_id, flow.sequence
                    if self._accept(flow, f):
                        await queue.put(flow)
            except grpc.aio.AioRpcError as exc:
                _log.info("agent flow stream interrupted", node=node.name, error=exc.details())
            first = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def status(self) -> observer_pb2.ObserverStatusResponse:
        response = observer_pb2.ObserverStatusResponse()
        seen_total = 0

        async def one(node: Node) -> observer_pb2.NodeFlowStatus:
            status = observer_pb2.NodeFlowStatus(node=node.name)
            try:
                agent = await self._stub(node.agent_address, node.name).AgentStatus(
                    agent_pb2.AgentStatusRequest(), timeout=AGENT_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    status.error = f"no answer within {AGENT_TIMEOUT:g} s"
                else:
                    status.error = exc.details() or exc.code().name
                return status
            status.reachable = True
            status.flows_held, status.flows_max = agent.flows_held, agent.flows_max
            status.flows_seen = agent.flows_seen
            return status

        for status in await asyncio.gather(*(one(n) for n in self._observed(""))):
            response.nodes.append(status)
            response.flows_held += status.flows_held
            response.flows_max += status.flows_max
            seen_total += status.flows_seen
        now = time.monotonic()
        if self._rate_sample is not None and now > self._rate_sample[0]:
            elapsed = now - self._rate_sample[0]
            response.flows_per_second = max(0, seen_total - self._rate_sample[1]) / elapsed
        self._rate_sample = (now, seen_total)
        return response
