"""How command lines word a failed call (`bulkhead.rpcerror.cli_message`), and which status
each kind of domain error is sent as (`bulkhead.rpcerror.STATUS_CODES`)."""

from __future__ import annotations

import grpc
from grpc_status import rpc_status

from bulkhead.errors import (
    AlreadyExists,
    BulkheadError,
    Conflict,
    Exhausted,
    FailedPrecondition,
    FieldViolation,
    Invalid,
    NotFound,
    Unavailable,
)
from bulkhead.rpcerror import (
    ApiError,
    cli_message,
    describe,
    domain_error,
    field_violations,
    status_code,
    to_status,
)
from controlplane.store.etcd import EtcdUnavailable


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


def raised(error: BulkheadError) -> Failed:
    """`error` as the client sees it after the servicer wrapper sent it."""
    status = to_status(error)
    return Failed(status_code(error), status.message,
                  ((rpc_status.GRPC_DETAILS_METADATA_KEY, status.SerializeToString()),))


def test_unreachable_server_exits_3() -> None:
    """Not 2: that is argparse's code for a malformed command line."""
    error = Failed(grpc.StatusCode.UNAVAILABLE, "failed to connect")
    assert cli_message(error, "the agent at /run/a.sock") == (
        "cannot reach the agent at /run/a.sock: failed to connect", 3)


def test_a_server_without_etcd_was_reached() -> None:
    error = Failed(grpc.StatusCode.UNAVAILABLE, "etcd unavailable: timeout")
    assert cli_message(error, "the control plane at h:1") == (
        "UNAVAILABLE: etcd unavailable: timeout", 1)


def test_other_errors_name_the_code() -> None:
    error = Failed(grpc.StatusCode.NOT_FOUND, "identity 9 does not exist")
    assert cli_message(error, "x") == ("NOT_FOUND: identity 9 does not exist", 1)


def test_field_violations_follow_one_per_line() -> None:
    error = raised(Invalid([FieldViolation("labels[0]", "bad"), FieldViolation("ip", "worse")]))
    assert describe(error) == "INVALID_ARGUMENT: invalid request\n  labels[0]: bad\n  ip: worse"
    assert cli_message(error, "x") == (describe(error), 1)


def test_each_kind_of_domain_error_has_one_code() -> None:
    codes = {kind: status_code(kind("x")) for kind in (
        NotFound, AlreadyExists, Conflict, Exhausted, FailedPrecondition, Unavailable)}
    assert codes == {NotFound: grpc.StatusCode.NOT_FOUND,
                     AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
                     Conflict: grpc.StatusCode.ABORTED,
                     Exhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
                     FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
                     Unavailable: grpc.StatusCode.UNAVAILABLE}
    assert status_code(Invalid([FieldViolation("ip", "bad")])) == (
        grpc.StatusCode.INVALID_ARGUMENT)
    assert status_code(EtcdUnavailable("timeout")) == grpc.StatusCode.UNAVAILABLE
    assert status_code(ApiError(grpc.StatusCode.INTERNAL, "x")) == grpc.StatusCode.INTERNAL


def test_a_relayed_refusal_is_the_same_domain_error() -> None:
    """What the agent does with the control plane's refusal of an endpoint."""
    sent = raised(AlreadyExists("invalid request", [FieldViolation("ip", "taken")]))
    relayed = domain_error(sent, "control plane: ")
    assert isinstance(relayed, AlreadyExists)
    assert relayed.message.startswith("control plane: invalid request")
    assert field_violations(raised(relayed)) == [FieldViolation("ip", "taken")]
    other = domain_error(Failed(grpc.StatusCode.DEADLINE_EXCEEDED, "slow"), "cp: ")
    assert status_code(other) == grpc.StatusCode.DEADLINE_EXCEEDED and str(other) == "cp: slow"
