"""Argument types for numbers the API carries in fixed-size fields (uint32 identities, int64
revisions, ports, seconds) and for IP addresses.

A value out of its field's range is refused while the command line is parsed, naming the
argument, in one line with exit 1 (as any bad value: README, "a failed call ... exits 1"),
instead of a protobuf ValueError traceback when the request is built. Not a ValueError, which
argparse would turn into its usage text and exit 2, meant for a malformed command.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from typing import NoReturn

UINT32_MAX = 2**32 - 1
INT64_MAX = 2**63 - 1
MAX_SECONDS = 366 * 86400.0
"""Longest timeout a command accepts (gRPC deadlines must be finite)."""


class BadValue(SystemExit):
    """A bad value of one argument: exits 1 with `bulkhead: NAME: PROBLEM`, as any SystemExit
    with a message; `name` and `problem` for callers that report it elsewhere (the console
    shows it at its form field)."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"bulkhead: {name}: {problem}")
        self.name = name
        self.problem = problem


def bad_value(name: str, problem: str) -> NoReturn:
    raise BadValue(name, problem)


def integer(name: str, low: int, high: int) -> Callable[[str], int]:
    """An integer `low`..`high` given for `name` (e.g. "--revision")."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            bad_value(name, f"expected an integer, got {text[:40]!r}")
        if not low <= value <= high:
            bad_value(name, f"{text[:40]} is out of range ({low} to {high})")
        return value

    return parse


def uint32(name: str) -> Callable[[str], int]:
    return integer(name, 0, UINT32_MAX)


def revision(name: str) -> Callable[[str], int]:
    return integer(name, 0, INT64_MAX)


def port(name: str) -> Callable[[str], int]:
    """0 (any port, for filters) to 65535."""
    return integer(name, 0, 65535)


def seconds(name: str) -> Callable[[str], float]:
    """A finite number of seconds, above 0 and at most a year."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            bad_value(name, f"expected a number of seconds, got {text[:40]!r}")
        if not math.isfinite(value) or not 0 < value <= MAX_SECONDS:
            bad_value(name, f"{text[:40]} is out of range (above 0, at most {MAX_SECONDS:.0f})")
        return value

    return parse


def ip_address(name: str) -> Callable[[str], str]:
    """An IPv4 or IPv6 address, in the form flows carry it (IPv6 compressed): filters compare
    addresses as text, so `10.0.0.300` or a host name would silently match nothing. Empty:
    no filter (argparse passes a string default through the type too)."""

    def parse(text: str) -> str:
        if not text.strip():
            return ""
        try:
            return str(ipaddress.ip_address(text.strip()))
        except ValueError:
            bad_value(name, f"expected an IPv4 or IPv6 address, got {text[:40]!r}")

    return parse
