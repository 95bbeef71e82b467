"""The agent stream and its admin views; thin over `controlplane.subscription`.

`Subscribe` is registered by hand with a pass-through response serializer: the fan-out hands
over bytes it framed once for every subscriber, so gRPC must not re-encode them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import grpc

from bulkhead import log
from bulkhead.errors import BulkheadError, FieldViolation, Invalid
from bulkhead.rpcerror import ApiError, abort
from bulkhead.v1 import subscription_pb2 as pb
from bulkhead.v1 import subscription_pb2_grpc
from controlplane import callers
from controlplane.records import messages
from controlplane.subscription import trace
from controlplane.subscription.fanout import Fanout
from controlplane.subscription.subscriber import Subscriber
from controlplane.subscription.waiter import ConvergenceWaiter

from .errors import rpc

_log = log.get(__name__)
SERVICE = pb.DESCRIPTOR.services_by_name["SubscriptionService"].full_name
HELLO_TIMEOUT = 10.0
AGENT_RENEWS_LEASE = "lease:agent"
"""A Hello capability: the agent heartbeats its node's lease itself (nodeagent's lease.py)."""


class SubscriptionService:
    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(SERVICE, {
            "Subscribe": grpc.stream_stream_rpc_method_handler(
                self.Subscribe, request_deserializer=pb.AgentMessage.FromString,
                response_serializer=bytes),
        })

    async def Subscribe(self, requests: AsyncIterator[pb.AgentMessage],
                        context: grpc.aio.ServicerContext) -> None:
        try:
            first = await asyncio.wait_for(anext(requests), HELLO_TIMEOUT)
            if first.WhichOneof("msg") != "hello":
                raise Invalid([FieldViolation("msg", "the first message must be hello")])
            callers.current().require_node(first.hello.node, "(hello)")
            sub = await self.fanout.open(first.hello, context.peer())
        except (TimeoutError, StopAsyncIteration):
            await abort(context, Invalid([FieldViolation("hello", "no hello received")]))
            return
        except BulkheadError as exc:
            await abort(context, exc)
            return
        error: BulkheadError | None = None
        tasks = [asyncio.create_task(self._send(sub, context)),
                 asyncio.create_task(self._read(sub, requests)),
                 asyncio.create_task(self.fanout.keep_lease(
                     sub, agent_renews=AGENT_RENEWS_LEASE in first.hello.capabilities)),
                 asyncio.create_task(sub.closed.wait())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and isinstance(task.exception(), BulkheadError):
                    error = task.exception()  # type: ignore[assignment]
            if sub.failure is not None and not tasks[0].done():
                # Give a reader that is still reading the chance to see the Reset.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(tasks[0]), 1.0)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.fanout.close(sub)
        if error is not None:
            await abort(context, error)
        if sub.failure is not None:
            await abort(context, ApiError(grpc.StatusCode.ABORTED,
                                          f"reset ({pb.Reset.Reason.Name(sub.failure[0])}): "
                                          f"{sub.failure[1]}"))

    @staticmethod
    async def _send(sub: Subscriber, context: grpc.aio.ServicerContext) -> None:
        async for message in sub.messages():
            tracer = trace.TRACER
            if tracer is None or not sub.sending[0]:
                await context.write(message)
                continue
            taken = time.time()
            await context.write(message)
            tracer.write(sub.node, *sub.sending, taken)

    async def _read(self, sub: Subscriber, requests: AsyncIterator[pb.AgentMessage]) -> None:
        async for message in requests:
            which = message.WhichOneof("msg")
            if which == "ack":
                self.fanout.ack(sub, message.ack.revision)
            elif which == "nack":
                self.fanout.nack(sub, message.nack.revision, message.nack.error)


class SubscriptionAdminService(subscription_pb2_grpc.SubscriptionAdminServiceServicer):
    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout
        self.waiter = ConvergenceWaiter(fanout)

    @rpc
    async def ListSubscriptions(self, request: pb.ListSubscriptionsRequest,
                                context: grpc.aio.ServicerContext
                                ) -> pb.ListSubscriptionsResponse:
        statuses = sorted(self.fanout.statuses().values(), key=lambda s: s.name)
        return pb.ListSubscriptionsResponse(
            subscriptions=[messages.node_subscription(s) for s in statuses],
            revision=self.fanout.state.revision)

    @rpc
    async def WaitForRevision(self, request: pb.WaitForRevisionRequest,
                              context: grpc.aio.ServicerContext) -> pb.WaitForRevisionResponse:
        result = await self.waiter.wait(request.revision, set(request.identities),
                                        request.timeout_seconds)
        return pb.WaitForRevisionResponse(
            converged=result.converged, nodes=result.nodes,
            pending=[messages.node_subscription(s) for s in result.pending],
            covered=[messages.node_subscription(s) for s in result.covered])
