"""A cap on the streaming calls one client connection may hold open (--max-streams-per-peer).

A stream costs the server a task, a bounded send queue and gRPC's buffers for as long as the
client keeps it; without a cap, one client could open streams until memory runs out. Every
streaming method (request or response streaming: the agent subscription, flow and health
watches, reflection) counts its open calls per peer (`context.peer()`: one connection); the
call beyond the limit is refused with RESOURCE_EXHAUSTED naming the limit, before any work.
Unary calls are not counted: they end by themselves.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import grpc

from bulkhead.errors import Exhausted
from bulkhead.rpcerror import abort
from bulkhead.rpcguard import WrappingServer


class StreamCap:
    """Open streaming calls per peer, at most `limit` each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = {}

    def enter(self, peer: str, method: str) -> None:
        """Counts one more stream of `peer`, or raises Exhausted when it has `limit` open."""
        count = self.open.get(peer, 0)
        if count >= self.limit:
            raise Exhausted(f"{method}: {peer} already has {count} streams open, the limit per "
                            f"client connection (--max-streams-per-peer {self.limit}); close "
                            "one first")
        self.open[peer] = count + 1

    def leave(self, peer: str) -> None:
        count = self.open.get(peer, 0) - 1
        if count > 0:
            self.open[peer] = count
        else:
            self.open.pop(peer, None)  # a peer gone leaves nothing behind

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """`handler` counted against the cap when it streams; as it is otherwise."""
        if not (handler.request_streaming or handler.response_streaming):
            return handler
        behaviour = (handler.stream_stream or handler.stream_unary or handler.unary_stream
                     or handler.unary_unary)
        if not (inspect.iscoroutinefunction(behaviour) or inspect.isasyncgenfunction(behaviour)):
            return handler  # a synchronous servicer: not served here
        cap = self

        async def admit(context: grpc.aio.ServicerContext) -> str:
            peer = context.peer()
            try:
                cap.enter(peer, method)
            except Exhausted as exc:
                await abort(context, exc)
            return peer

        wrapped: Callable[..., Any]
        if inspect.isasyncgenfunction(behaviour):
            async def generate(request: Any, context: grpc.aio.ServicerContext) -> Any:
                peer = await admit(context)
                try:
                    async for response in behaviour(request, context):
                        yield response
                finally:
                    cap.leave(peer)

            wrapped = generate
        else:
            async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
                peer = await admit(context)
                try:
                    return await behaviour(request, context)
                finally:
                    cap.leave(peer)

            wrapped = call
        kind = (grpc.stream_stream_rpc_method_handler
                if handler.request_streaming and handler.response_streaming
                else grpc.stream_unary_rpc_method_handler if handler.request_streaming
                else grpc.unary_stream_rpc_method_handler)
        return kind(wrapped, handler.request_deserializer,  # type: ignore[operator]
                    handler.response_serializer)


class StreamCappedServer(WrappingServer):
    """Stands for the server while services register (like rpcguard.GuardedServer and
    authz.AuthorizedServer, which it wraps): streaming handlers are counted by `cap`."""

    def __init__(self, server: Any, cap: StreamCap) -> None:
        super().__init__(server, cap.wrap)
        self.cap = cap
