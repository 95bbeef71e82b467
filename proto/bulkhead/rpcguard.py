"""Requests whose bytes do not decode are answered INVALID_ARGUMENT, not UNKNOWN.

grpc-python decodes a request before any servicer code runs; a deserializer that raises ends
the call with UNKNOWN and a logged traceback. `guarded(server)` stands for the server while
services register: every method handler they add gets a deserializer that returns `Malformed`
instead of raising, and a behaviour that answers a `Malformed` request (or stream message)
with INVALID_ARGUMENT naming the field `request`. Registration-time wrapping costs nothing on
calls whose requests decode, unlike a server interceptor, which runs on every call.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import grpc

from .errors import FieldViolation, Invalid
from .rpcerror import abort


class Malformed:
    """What a guarded deserializer returns for bytes that are not a valid request."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


async def _refuse(context: grpc.aio.ServicerContext, request: Malformed) -> None:
    await abort(context, Invalid([FieldViolation("request", request.problem)],
                                 "malformed request"))


def _decoder(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # DecodeError, or anything a custom deserializer raises
            return Malformed(f"does not decode: {exc}")

    return decode


def _checked(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
             ) -> AsyncIterator[Any]:
    async def each() -> AsyncIterator[Any]:
        async for request in requests:
            if isinstance(request, Malformed):
                await _refuse(context, request)
            yield request

    return each()


def _behaviour(behaviour: Callable[..., Any], request_streaming: bool) -> Callable[..., Any]:
    """`behaviour` of the same kind (coroutine or async generator function: grpc.aio tells
    them apart by it) that refuses Malformed requests first."""
    if inspect.isasyncgenfunction(behaviour):
        async def generate(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if request_streaming:
                request = _checked(request, context)
            elif isinstance(request, Malformed):
                await _refuse(context, request)
            async for response in behaviour(request, context):
                yield response

        return generate

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request_streaming:
            request = _checked(request, context)
        elif isinstance(request, Malformed):
            await _refuse(context, request)
        return await behaviour(request, context)

    return call


def guard(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """`handler` with a deserializer that never raises and a behaviour refusing Malformed."""
    if handler.request_deserializer is None:
        return handler  # raw bytes: nothing to decode
    streaming = handler.request_streaming
    behaviour = (handler.stream_stream or handler.stream_unary or handler.unary_stream
                 or handler.unary_unary)
    if not (inspect.iscoroutinefunction(behaviour) or inspect.isasyncgenfunction(behaviour)):
        return handler  # a synchronous servicer (run on grpc.aio's executor): left as it is
    decode = _decoder(handler.request_deserializer)
    if not streaming and not handler.response_streaming:
        return grpc.unary_unary_rpc_method_handler(
            _behaviour(handler.unary_unary, False), decode, handler.response_serializer)
    if not streaming:
        return grpc.unary_stream_rpc_method_handler(
            _behaviour(handler.unary_stream, False), decode, handler.response_serializer)
    if not handler.response_streaming:
        return grpc.stream_unary_rpc_method_handler(
            _behaviour(handler.stream_unary, True), decode, handler.response_serializer)
    return grpc.stream_stream_rpc_method_handler(
        _behaviour(handler.stream_stream, True), decode, handler.response_serializer)


Wrap = Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler]
"""Turns the handler of a method (`/package.Service/Method`) into the one that serves it."""


class _WrappedGeneric(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler, wrap: Wrap) -> None:
        self.inner = inner
        self.wrap = wrap
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self.inner.service(details)
        if handler is None:
            return None
        method: str = details.method  # type: ignore[attr-defined]
        wrapped = self._wrapped.get(method)
        if wrapped is None:  # one per method the inner handler knows: bounded
            wrapped = self._wrapped[method] = self.wrap(method, handler)
        return wrapped


class WrappingServer:
    """Stands for the server while services register (pass it to `add_*Servicer_to_server`
    and reflection): every method handler added is replaced by `wrap(method, handler)`, once,
    at registration. The request guard here, authorization, the stream cap and the agent's
    control-plane-only port are such wrappers, stacked by wrapping a WrappingServer."""

    def __init__(self, server: Any, wrap: Wrap) -> None:
        self.server = server
        self.wrap = wrap

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self.server.add_generic_rpc_handlers([_WrappedGeneric(h, self.wrap) for h in handlers])

    def add_registered_method_handlers(self, service: str,
                                       handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        self.server.add_registered_method_handlers(
            service, {name: self.wrap(f"/{service}/{name}", h) for name, h in handlers.items()})


class GuardedServer(WrappingServer):
    """Pass it instead of the server to `add_*Servicer_to_server` (and reflection)."""

    def __init__(self, server: grpc.aio.Server) -> None:
        super().__init__(server, lambda _method, handler: guard(handler))


def guarded(server: grpc.aio.Server) -> Any:
    """`server` as registration sees it (typed Any: the generated code takes any server)."""
    return GuardedServer(server)
