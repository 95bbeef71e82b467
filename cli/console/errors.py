"""The console's one error: what a failed call or a bad request says, with its bad fields
(`field`, `description`, what the editor shows at their paths), and its HTTP status."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from bulkhead.rpcerror import cli_message, field_violations

_HTTP_STATUS = {grpc.StatusCode.UNAVAILABLE: 502, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
                grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.PERMISSION_DENIED: 403,
                grpc.StatusCode.UNAUTHENTICATED: 401}
"""The HTTP status of a failed call (the rest, the caller's mistakes, are 400)."""


class ApiError(Exception):
    """A call that failed: the message and the bad fields (`field`, `description`)."""

    def __init__(self, message: str, problems: Sequence[dict[str, Any]] = (),
                 status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.problems = list(problems)
        self.status = status


def refused(exc: grpc.aio.AioRpcError, address: str) -> ApiError:
    message, _ = cli_message(exc, f"the control plane at {address}")
    status = _HTTP_STATUS.get(exc.code(), 400)
    return ApiError(message, [{"field": v.field, "description": v.description}
                              for v in field_violations(exc)], status)
