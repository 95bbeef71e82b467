"""What a status may echo: values are cut, the words around them kept, and the whole status
stays within gRPC's metadata limit (8 KiB) whatever the request held."""

from __future__ import annotations

import base64

import grpc

from bulkhead.errors import FieldViolation, Invalid, shown
from bulkhead.rpcerror import ApiError, clip, field_violations, to_status
from tests.test_rpcerror import raised


def test_shown_cuts_long_values_and_says_how_long() -> None:
    assert shown("web") == "'web'"
    assert shown("x" * 1000) == "'" + "x" * 99 + "…(1000 bytes)"
    assert shown(7) == "7"


def test_clip_keeps_head_and_tail() -> None:
    assert clip("short", 100) == "short"
    text = "node '" + "n" * 100_000 + "' is not registered"
    clipped = clip(text, 1000)
    assert len(clipped) <= 1000
    assert clipped.startswith("node 'nnn") and clipped.endswith("' is not registered")
    assert "bytes)" in clipped


def test_a_status_fits_the_metadata_limit_whatever_it_carries() -> None:
    error = Invalid([FieldViolation(f"f{i}€" * 100, "ü€" * 5000) for i in range(2000)])
    status = to_status(error)
    # grpc-message is percent-encoded (3 characters per byte at worst), details in base64.
    trailers = 3 * len(status.message.encode()) + len(base64.b64encode(
        status.SerializeToString()))
    assert trailers < 8 << 10
    violations = raised(error)
    found = field_violations(violations)
    assert 1 < len(found) < 2000
    assert found[-1].description.endswith("more problems")
    assert found[0].field.startswith("f0€f0")


def test_small_statuses_are_sent_unchanged() -> None:
    error = ApiError(grpc.StatusCode.NOT_FOUND, "identity 9 does not exist")
    assert to_status(error).message == "identity 9 does not exist"
    bad = Invalid([FieldViolation("labels[0]", "bad")])
    assert to_status(bad).message == "invalid request: labels[0]: bad"


def test_a_long_ascii_message_keeps_its_full_budget() -> None:
    message = to_status(Invalid([FieldViolation("name", "n" * 10_000)])).message
    assert 500 < len(message) <= 600
