"""Hook point for timing the fan-out's stages; bench/fanout.py is the only user.

A replica leaves ``TRACER`` None, which costs one `is None` test per revision and per stream
write. The benchmark starts the replica it measures through bench/fanout_trace.py, which
installs a tracer here before the control plane starts: it records when the etcd watch handed
the state each revision, when the hub queued it and every stream write, and the benchmark
joins that with what the agents saw, so it can say which stage owns the tail.
"""

from __future__ import annotations

from typing import Protocol


class FanoutTracer(Protocol):
    watched: dict[int, float]
    """revision -> time.time() the subscription state got it from the watch"""
    queued: dict[int, float]
    """revision -> time.time() the hub queued it for every subscriber"""

    def start(self) -> None:
        """Called on the replica's event loop once the fan-out starts."""

    def write(self, node: str, first: int, last: int, taken: float) -> None:
        """A stream write of revisions first..last, taken from the queue at ``taken``, was
        accepted by gRPC now."""


TRACER: FanoutTracer | None = None


def install(tracer: FanoutTracer | None) -> None:
    """Before the control plane starts (bench/fanout_trace.py); None removes it."""
    global TRACER
    TRACER = tracer
