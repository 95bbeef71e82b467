"""HTTP rules (`toPorts[].rules.http`) and the one matcher that decides a request against them.

The policy parser validates rules by compiling them here, `policy trace` asks the same question
as the node's proxy does, and the proxy answers every request with it: one piece of code, so a
trace and the traffic cannot disagree.

Semantics follow Cilium's Envoy filter: `method`, `path` and `host` are RE2 expressions matched
against the whole value (`path` against the request target as sent, query included, like
Envoy's `:path`); `headers` entries are `"Name: value"` (exact value) or `"Name"` (present);
header names match case-insensitively. A request passes a rule when all of that holds and every
`headerMatches` item either matches or has a mismatch action (LOG, ADD, DELETE, REPLACE) that
lets it continue after logging or editing the request's headers. A request passes a list of
rules when any rule passes; an empty list passes everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import re2  # type: ignore[import-untyped]

from bulkhead.v1 import subscription_pb2


class Mismatch(StrEnum):
    """What a `headerMatches` item does when the header does not match (Cilium's names)."""

    FAIL = ""
    LOG = "LOG"
    ADD = "ADD"
    DELETE = "DELETE"
    REPLACE = "REPLACE"


@dataclass(frozen=True, order=True)
class HeaderMatch:
    """`value` "" = the header must be present."""

    name: str
    value: str = ""
    mismatch: Mismatch = Mismatch.FAIL


@dataclass(frozen=True, order=True)
class HttpRule:
    """One item of a `rules.http` list; empty fields match anything."""

    method: str = ""
    path: str = ""
    host: str = ""
    headers: tuple[str, ...] = ()
    header_matches: tuple[HeaderMatch, ...] = ()

    def __str__(self) -> str:
        parts = [f"{k}={v}" for k, v in (("method", self.method), ("path", self.path),
                                         ("host", self.host)) if v]
        parts += [f"header={h}" for h in self.headers]
        parts += [f"headerMatch={m.name}{'=' + m.value if m.value else ''}"
                  f"{'/' + m.mismatch.value if m.mismatch else ''}" for m in self.header_matches]
        return " ".join(parts) or "any request"


class InvalidHttpRule(ValueError):
    """A rule that cannot be compiled; `field` names it (`<prefix>[0].path`, `...headers[1]`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass
class HttpRequest:
    """What the matcher looks at. `headers` keep their order and case; ADD/DELETE/REPLACE edit
    them in place, so the proxy forwards the edited request."""

    method: str
    target: str
    host: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """All values of `name`, joined with "," as Envoy does; None when absent."""
        lower = name.lower()
        values = [v for k, v in self.headers if k.lower() == lower]
        return ",".join(values) if values else None

    def remove_header(self, name: str) -> None:
        lower = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != lower]


@dataclass(frozen=True)
class HttpVerdict:
    """`rule` is the index of the first rule that let the request through (None if denied or
    the list is empty); `missing` and `rejected` name header matches that did not match, as
    Cilium's access log does."""

    allowed: bool
    rule: int | None = None
    missing: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()


_QUIET = re2.Options()
_QUIET.log_errors = False  # the error goes to the caller, not to the process's stderr


def _full(pattern: str, where: str) -> Any:
    if not pattern:
        return None
    try:
        return re2.compile(pattern, options=_QUIET)
    except re2.error as err:
        reason = err.args[0].decode() if err.args and isinstance(err.args[0], bytes) else err
        raise InvalidHttpRule(where, f"not a valid RE2 regular expression ({reason})") from None


def _split_header(spec: str, where: str) -> tuple[str, str | None]:
    """`"Name: value"` -> (name, value); `"Name"` -> (name, None)."""
    name, sep, value = spec.partition(":")
    name = name.strip()
    if not name or any(c.isspace() for c in name):
        raise InvalidHttpRule(where, f"{spec!r} is not 'Name' or 'Name: value'")
    return name, value.strip() if sep else None


class _Compiled:
    def __init__(self, rule: HttpRule, where: str) -> None:
        self.rule = rule
        self.method = _full(rule.method, f"{where}method")
        self.path = _full(rule.path, f"{where}path")
        self.host = _full(rule.host, f"{where}host")
        self.headers = [_split_header(h, f"{where}headers[{i}]")
                        for i, h in enumerate(rule.headers)]
        for i, m in enumerate(rule.header_matches):
            if not m.name.strip():
                raise InvalidHttpRule(f"{where}headerMatches[{i}].name", "must not be empty")

    def allows(self, request: HttpRequest) -> bool:
        if self.method and not self.method.fullmatch(request.method):
            return False
        if self.path and not self.path.fullmatch(request.target):
            return False
        if self.host and not self.host.fullmatch(request.host):
            return False
        for name, value in self.headers:
            got = request.header(name)
            if got is None or (value is not None and got != value):
                return False
        return True

    def header_matches(self, request: HttpRequest, missing: list[str], rejected: list[str]) -> bool:
        """Cilium's HeaderMatch::allowed for each item; False when one fails the request."""
        accepted = True
        for m in self.rule.header_matches:
            got = request.header(m.name)
            present_match = not m.value
            if (got is not None) if present_match else got == m.value:
                continue
            if m.mismatch is Mismatch.FAIL:
                missing.append(m.name)
                accepted = False
            elif m.mismatch is Mismatch.LOG:
                missing.append(m.name)
            elif m.mismatch is Mismatch.ADD:
                request.headers.append((m.name, m.value))
                missing.append(m.name)
            elif m.mismatch is Mismatch.DELETE:
                if not present_match and got is not None:
                    request.remove_header(m.name)
                    rejected.append(m.name)
            else:  # REPLACE
                if got is not None:
                    rejected.append(m.name)
                request.remove_header(m.name)
                request.headers.append((m.name, m.value))
                missing.append(m.name)
        return accepted


class HttpPolicy:
    """A compiled list of rules (ORed). Compiling validates: bad input raises InvalidHttpRule."""

    def __init__(self, rules: Iterable[HttpRule], *, prefix: str = "") -> None:
        self.rules: tuple[HttpRule, ...] = tuple(rules)
        self._compiled = [_Compiled(r, f"{prefix}[{i}].") for i, r in enumerate(self.rules)]

    def check(self, request: HttpRequest) -> HttpVerdict:
        """Decide `request`; header-match actions of every rule that applies edit it (Envoy's
        filter evaluates them all when any rule has header matches)."""
        if not self._compiled:
            return HttpVerdict(True)
        missing: list[str] = []
        rejected: list[str] = []
        first: int | None = None
        for i, compiled in enumerate(self._compiled):
            if not compiled.allows(request):
                continue
            if not compiled.rule.header_matches:
                if first is None:
                    first = i
                if not any(c.rule.header_matches for c in self._compiled):
                    break
                continue
            if compiled.header_matches(request, missing, rejected) and first is None:
                first = i
        return HttpVerdict(first is not None, first, tuple(missing), tuple(rejected))


def validate(rules: Sequence[HttpRule], prefix: str = "") -> None:
    """Raise InvalidHttpRule (field under `prefix`) for the first rule that does not compile."""
    HttpPolicy(rules, prefix=prefix)


def to_proto(rule: HttpRule) -> subscription_pb2.HttpRule:
    return subscription_pb2.HttpRule(
        method=rule.method, path=rule.path, host=rule.host, headers=list(rule.headers),
        header_matches=[subscription_pb2.HttpHeaderMatch(name=m.name, value=m.value,
                                                         mismatch=m.mismatch.value)
                        for m in rule.header_matches])


def from_proto(msg: subscription_pb2.HttpRule) -> HttpRule:
    return HttpRule(msg.method, msg.path, msg.host, tuple(msg.headers),
                    tuple(HeaderMatch(m.name, m.value, Mismatch(m.mismatch))
                          for m in msg.header_matches))
