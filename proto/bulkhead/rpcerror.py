"""gRPC errors with structured details, shared by every servicer and every client.

Servers raise `ApiError`; the servicer wrapper turns it into a status with `google.rpc`
details (BadRequest field violations for INVALID_ARGUMENT). Clients read them back with
`field_violations()`; command lines print `cli_message()` (`describe()`: the code, the message
and one line per field violation).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

T = TypeVar("T")

MAX_MESSAGE = 600
"""Characters of a status message sent; longer ones lose their middle (see `clip`)."""
MAX_FIELD = 200
MAX_DESCRIPTION = 300
MAX_DETAILS_BYTES = 3000
"""Field violations sent per status, in serialized bytes; the rest are counted, not listed.
The status travels in the trailers twice (message, and base64 details): it must stay under
gRPC's 8 KiB metadata limit whatever the request held, or the client gets RESOURCE_EXHAUSTED
instead of the error."""


def shown(value: object, limit: int = 100) -> str:
    """`repr(value)` for an error message, cut after `limit` characters with the size of the
    whole (`'xxxx'…(1048576 bytes)`): a message echoes what was wrong, not all of it."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value.encode()) if isinstance(value, str) else len(text)
    return f"{text[:limit]}…({size} bytes)"


def clip(text: str, limit: int) -> str:
    """`text` whole if it has at most `limit` characters, else its head and tail around a note
    of what was cut: an echoed value (a 1 MB name) is cut, the words after it are kept."""
    if len(text) <= limit:
        return text
    tail = limit // 4
    head = limit - tail - 30
    cut = text[head:len(text) - tail]
    return f"{text[:head]}…({len(cut.encode())} bytes)…{text[len(text) - tail:]}"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str

    def __str__(self) -> str:
        return f"{self.field}: {self.description}"


@dataclass
class ApiError(Exception):
    """An error the client can act on; `code` is the gRPC status code."""

    code: grpc.StatusCode
    message: str
    violations: list[FieldViolation] = field(default_factory=list)

    def __str__(self) -> str:
        if not self.violations:
            return self.message
        return f"{self.message}: " + "; ".join(str(v) for v in self.violations)

    def to_status(self) -> status_pb2.Status:
        """The status as sent, with every text clipped (`clip`) and at most
        MAX_DETAILS_BYTES of field violations, so it always reaches the client."""
        text = str(self)
        message = clip(text, MAX_MESSAGE)
        if len(message.encode()) > MAX_MESSAGE + 8:  # more than clip's own two "…"
            # grpc-message percent-encodes every byte of a multi-byte character (3 each).
            message = clip(text, MAX_MESSAGE // 4)
        status = status_pb2.Status(code=self.code.value[0], message=message)
        if self.violations:
            bad = error_details_pb2.BadRequest()
            for i, v in enumerate(self.violations):
                added = bad.field_violations.add(field=clip(v.field, MAX_FIELD),
                                                 description=clip(v.description, MAX_DESCRIPTION))
                if bad.ByteSize() > MAX_DETAILS_BYTES:
                    bad.field_violations.remove(added)
                    bad.field_violations.add(
                        field="…", description=f"and {len(self.violations) - i} more problems")
                    break
            detail = any_pb2.Any()
            detail.Pack(bad)
            status.details.append(detail)
        return status


def invalid(violations: Iterable[FieldViolation], message: str = "invalid request") -> ApiError:
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, message, list(violations))


def not_found(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.NOT_FOUND, message)


def already_exists(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.ALREADY_EXISTS, message)


def failed_precondition(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.FAILED_PRECONDITION, message)


def exhausted(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED, message)


def unavailable(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.UNAVAILABLE, message)


def field_violations(error: grpc.RpcError) -> list[FieldViolation]:
    """The BadRequest field violations a server attached to `error`, if any."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return []
    found: list[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
    return found


def describe(error: grpc.RpcError) -> str:
    """`CODE: message` for a CLI user. When the server attached field violations the message
    is `invalid request`, followed by one indented `field: description` line per violation."""
    code = error.code() if hasattr(error, "code") else None
    name = code.name if code is not None else "ERROR"
    violations = field_violations(error)
    if violations:
        return "\n".join([f"{name}: invalid request", *(f"  {v}" for v in violations)])
    return f"{name}: {error.details() if hasattr(error, 'details') else error}"


def cli_message(error: grpc.RpcError, server: str) -> tuple[str, int]:
    """What a command line prints for `error` from `server` (e.g. "the control plane at
    HOST:PORT") and the exit code: `cannot reach ...` and 2 when the call never got there,
    else `describe(error)` and 1. An UNAVAILABLE naming etcd came from a server that was
    reached but cannot reach etcd itself."""
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    if code == grpc.StatusCode.UNAVAILABLE and "etcd" not in (details or ""):
        return f"cannot reach {server}: {details}", 2
    return describe(error), 1


async def abort(context: grpc.aio.ServicerContext, error: ApiError) -> None:
    """Ends the call with `error` and its details (never returns)."""
    await context.abort_with_status(rpc_status.to_status(error.to_status()))


def servicer_method(component: str) -> Callable[[Callable[..., Awaitable[T]]],
                                                Callable[..., Awaitable[T]]]:
    """Decorates a grpc.aio servicer method: ApiError becomes its status with details, anything
    else INTERNAL without a traceback for the client (the traceback goes to the log). Every
    log line of the call carries its method."""

    def decorate(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        name = method.__name__

        @functools.wraps(method)
        async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
            # bind/reset rather than the bound_contextvars() context manager, which costs a
            # generator and a copy of every bound variable on every call.
            tokens = structlog.contextvars.bind_contextvars(rpc=name)
            try:
                return await method(self, request, context)
            except ApiError as exc:
                await abort(context, exc)
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception:
                structlog.get_logger(__name__).exception("rpc failed", method=method.__name__)
                await abort(context, ApiError(grpc.StatusCode.INTERNAL,
                                              f"internal error; see the {component}'s log"))
            finally:
                structlog.contextvars.reset_contextvars(**tokens)
            raise AssertionError("unreachable")

        return wrapper

    return decorate
