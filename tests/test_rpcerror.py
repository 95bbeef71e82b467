"""How command lines word a failed call (`bulkhead.rpcerror.cli_message`)."""

from __future__ import annotations

import grpc
from grpc_status import rpc_status

from bulkhead.rpcerror import ApiError, FieldViolation, cli_message, describe, invalid


class Failed(grpc.RpcError):
    """What a stub raises: a grpc.RpcError that is also the call."""

    def __init__(self, code: grpc.StatusCode, details: str,
                 metadata: tuple[tuple[str, bytes], ...] = ()) -> None:
        self._code, self._details, self._metadata = code, details, metadata

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._metadata


def raised(error: ApiError) -> Failed:
    """`error` as the client sees it after the servicer wrapper sent it."""
    status = error.to_status()
    return Failed(error.code, status.message,
                  ((rpc_status.GRPC_DETAILS_METADATA_KEY, status.SerializeToString()),))


def test_unreachable_server_exits_2() -> None:
    error = Failed(grpc.StatusCode.UNAVAILABLE, "failed to connect")
    assert cli_message(error, "the agent at /run/a.sock") == (
        "cannot reach the agent at /run/a.sock: failed to connect", 2)


def test_a_server_without_etcd_was_reached() -> None:
    error = Failed(grpc.StatusCode.UNAVAILABLE, "etcd unavailable: timeout")
    assert cli_message(error, "the control plane at h:1") == (
        "UNAVAILABLE: etcd unavailable: timeout", 1)


def test_other_errors_name_the_code() -> None:
    error = Failed(grpc.StatusCode.NOT_FOUND, "identity 9 does not exist")
    assert cli_message(error, "x") == ("NOT_FOUND: identity 9 does not exist", 1)


def test_field_violations_follow_one_per_line() -> None:
    error = raised(invalid([FieldViolation("labels[0]", "bad"), FieldViolation("ip", "worse")]))
    assert describe(error) == "INVALID_ARGUMENT: invalid request\n  labels[0]: bad\n  ip: worse"
    assert cli_message(error, "x") == (describe(error), 1)
