"""What went wrong, in the domain's words, for the control plane and the agent alike.

Domain code raises these and never names a transport: the gRPC layer (`bulkhead.rpcerror`)
maps each class to one status code in one table, so the same kind of failure gets the same
code from every call. Every error carries a message and, when it is about the request's
fields, one `FieldViolation` per bad field.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


def shown(value: object, limit: int = 100) -> str:
    """`repr(value)` for an error message, cut after `limit` characters with the size of the
    whole (`'xxxx'…(1048576 bytes)`): a message echoes what was wrong, not all of it."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value.encode()) if isinstance(value, str) else len(text)
    return f"{text[:limit]}…({size} bytes)"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request (`labels[1]`, `ack.revision`) and what is wrong with it."""

    field: str
    description: str

    def __str__(self) -> str:
        return f"{self.field}: {self.description}"


class BulkheadError(Exception):
    """A refusal the caller can act on: `message`, and the bad fields when there are any."""

    def __init__(self, message: str, violations: Iterable[FieldViolation] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.violations = list(violations)

    def __str__(self) -> str:
        if not self.violations:
            return self.message
        return f"{self.message}: " + "; ".join(str(v) for v in self.violations)


class NotFound(BulkheadError):
    """The named object does not exist (or no longer: a node whose lease expired)."""


class AlreadyExists(BulkheadError):
    """The object to create exists already, or holds what the request wanted to take."""


class Conflict(BulkheadError):
    """A write kept losing races with concurrent writers; retrying the call may succeed."""


class Exhausted(BulkheadError):
    """A range, pool or quota is full, or the request is larger than the server handles."""


class FailedPrecondition(BulkheadError):
    """The system is not in the state the call needs (an identity still referenced, a name
    taken by another node); the caller must change that state first."""


class Invalid(BulkheadError):
    """The request itself is wrong; `violations` names each bad field."""

    def __init__(self, violations: Iterable[FieldViolation],
                 message: str = "invalid request") -> None:
        super().__init__(message, violations)


class Unavailable(BulkheadError):
    """A dependency (etcd, the control plane, the agent's first sync) cannot be reached now."""


class PermissionDenied(BulkheadError):
    """The caller is known but may not make this call (a node speaking for another node)."""


class Unauthenticated(BulkheadError):
    """The caller is not known: no certificate, a revoked one, or an unusable join token."""
