"""gRPC errors with structured details, shared by every servicer and every client.

Domain code raises `bulkhead.errors` exceptions; `STATUS_CODES` below is the one table that
maps each kind to a status code, and the servicer wrapper (`servicer_method`, `abort`) sends it
with `google.rpc` details (BadRequest field violations). Clients read them back with
`field_violations()` (`domain_error()` turns a failed call into the domain exception again);
command lines print `cli_message()` (`describe()`: the code, the message and one line per field
violation).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from .errors import (
    AlreadyExists,
    BulkheadError,
    Conflict,
    Exhausted,
    FailedPrecondition,
    FieldViolation,
    Invalid,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)

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


def clip(text: str, limit: int) -> str:
    """`text` whole if it has at most `limit` characters, else its head and tail around a note
    of what was cut: an echoed value (a 1 MB name) is cut, the words after it are kept."""
    if len(text) <= limit:
        return text
    tail = limit // 4
    head = limit - tail - 30
    cut = text[head:len(text) - tail]
    return f"{text[:head]}…({len(cut.encode())} bytes)…{text[len(text) - tail:]}"


STATUS_CODES: dict[type[BulkheadError], grpc.StatusCode] = {
    Invalid: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    Conflict: grpc.StatusCode.ABORTED,
    Exhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
}
"""The status code of each kind of domain error (a subclass takes its nearest listed base's)."""

_DOMAIN_ERRORS = {code: kind for kind, code in STATUS_CODES.items()}


class ApiError(BulkheadError):
    """A status with an explicit code, for the gRPC layer only: INTERNAL, a stream reset, a
    code relayed from another server that no domain error stands for."""

    def __init__(self, code: grpc.StatusCode, message: str,
                 violations: Iterable[FieldViolation] = ()) -> None:
        super().__init__(message, violations)
        self.code = code


def status_code(error: BulkheadError) -> grpc.StatusCode:
    """The code `error` is sent with: `STATUS_CODES` of its class (or of its nearest base)."""
    if isinstance(error, ApiError):
        return error.code
    for kind in type(error).__mro__:
        if kind in STATUS_CODES:
            return STATUS_CODES[kind]  # type: ignore[index]
    return grpc.StatusCode.UNKNOWN


def to_status(error: BulkheadError) -> status_pb2.Status:
    """The status as sent, with every text clipped (`clip`) and at most MAX_DETAILS_BYTES of
    field violations, so it always reaches the client."""
    text = str(error)
    message = clip(text, MAX_MESSAGE)
    if len(message.encode()) > MAX_MESSAGE + 8:  # more than clip's own two "…"
        # grpc-message percent-encodes every byte of a multi-byte character (3 each).
        message = clip(text, MAX_MESSAGE // 4)
    status = status_pb2.Status(code=status_code(error).value[0], message=message)
    if error.violations:
        bad = error_details_pb2.BadRequest()
        for i, v in enumerate(error.violations):
            added = bad.field_violations.add(field=clip(v.field, MAX_FIELD),
                                             description=clip(v.description, MAX_DESCRIPTION))
            if bad.ByteSize() > MAX_DETAILS_BYTES:
                bad.field_violations.remove(added)
                bad.field_violations.add(
                    field="…", description=f"and {len(error.violations) - i} more problems")
                break
        detail = any_pb2.Any()
        detail.Pack(bad)
        status.details.append(detail)
    return status


def domain_error(error: grpc.RpcError, prefix: str = "") -> BulkheadError:
    """A failed call as the domain error it stands for (`STATUS_CODES` read backwards), its
    message `prefix` + the server's, its field violations kept: how a server passes on the
    refusal of a server it called. A code no domain error stands for stays as it came."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    message = prefix + (details or code.name)
    kind = _DOMAIN_ERRORS.get(code)
    if kind is Invalid:
        return Invalid(field_violations(error), message)
    if kind is not None:
        return kind(message, field_violations(error))
    return ApiError(code, message, field_violations(error))


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


EXIT_FAILED = 1
"""A call the server refused or failed (any status code), or a bad value."""
EXIT_USAGE = 2
"""A malformed command line (argparse's own code)."""
EXIT_UNREACHABLE = 3
"""The server (control plane, agent) could not be reached."""


def cli_message(error: grpc.RpcError, server: str) -> tuple[str, int]:
    """What a command line prints for `error` from `server` (e.g. "the control plane at
    HOST:PORT") and the exit code: `cannot reach ...` and EXIT_UNREACHABLE when the call never
    got there, else `describe(error)` and EXIT_FAILED. An UNAVAILABLE naming etcd came from a
    server that was reached but cannot reach etcd itself."""
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    if code == grpc.StatusCode.UNAVAILABLE and "etcd" not in (details or ""):
        return f"cannot reach {server}: {details}", EXIT_UNREACHABLE
    return describe(error), EXIT_FAILED


async def abort(context: grpc.aio.ServicerContext, error: BulkheadError) -> None:
    """Ends the call with `error`'s status code and details (never returns)."""
    await context.abort_with_status(rpc_status.to_status(to_status(error)))


def servicer_method(component: str) -> Callable[[Callable[..., Awaitable[T]]],
                                                Callable[..., Awaitable[T]]]:
    """Decorates a grpc.aio servicer method: a domain error becomes its status with details,
    anything else INTERNAL without a traceback for the client (the traceback goes to the log).
    Every log line of the call carries its method."""

    def decorate(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        name = method.__name__

        @functools.wraps(method)
        async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
            # bind/reset rather than the bound_contextvars() context manager, which costs a
            # generator and a copy of every bound variable on every call.
            tokens = structlog.contextvars.bind_contextvars(rpc=name)
            try:
                return await method(self, request, context)
            except BulkheadError as exc:
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
