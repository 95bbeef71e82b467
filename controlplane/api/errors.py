"""One place that turns exceptions into gRPC statuses: ApiError with its details, anything
else INTERNAL without a traceback for the client (the traceback goes to the log)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog

from bulkhead import log
from bulkhead.rpcerror import ApiError, abort

_log = log.get(__name__)
T = TypeVar("T")


def rpc(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        try:
            with structlog.contextvars.bound_contextvars(rpc=method.__name__):
                return await method(self, request, context)
        except ApiError as exc:
            await abort(context, exc)
        except grpc.aio.AbortError:
            raise
        except Exception:
            _log.exception("rpc failed", method=method.__name__)
            await abort(context, ApiError(grpc.StatusCode.INTERNAL,
                                          "internal error; see the control plane's log"))
        raise AssertionError("unreachable")

    return wrapper
