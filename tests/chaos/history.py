"""What happened during a run, as the checker needs it: every operation with its outcome as
the client saw it, policy changes with their convergence windows, probe results, faults."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import grpc

UNKNOWN_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                 grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
"""Errors after which the client cannot know whether the write happened."""


@dataclass
class Op:
    kind: str           # endpoint-create | endpoint-delete | identity-allocate | ...
    key: str            # endpoint name, label set ("a,b"), policy name
    start: float
    end: float = 0.0
    outcome: str = ""   # ok | unknown | refused
    detail: str = ""    # the status code and message of an error
    value: int = 0      # the identity an allocation or endpoint create returned

    def failed(self, exc: grpc.RpcError, now: float) -> None:
        code = exc.code() if isinstance(exc, grpc.aio.AioRpcError | grpc.Call) else None
        self.end = now
        self.outcome = "unknown" if code in UNKNOWN_CODES or code is None else "refused"
        self.detail = f"{code.name if code else '?'}: {exc.details() if code else exc}"[:300]


@dataclass
class Toggle:
    """The allowing policy made present (`state`) or absent; traffic may have either verdict
    between `start` and `converged` (every agent acked the write's revision)."""

    state: bool
    start: float
    converged: float
    attempts: int = 1


@dataclass
class Probe:
    client: str
    start: float
    end: float
    result: str         # ok | timeout | refused | error | empty


@dataclass
class Fault:
    kind: str
    target: str
    start: float
    end: float = 0.0


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    toggles: list[Toggle] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    def op_counts(self) -> dict[str, Counter[str]]:
        counts: dict[str, Counter[str]] = {}
        for op in self.ops:
            counts.setdefault(op.kind, Counter())[op.outcome] += 1
        return counts
