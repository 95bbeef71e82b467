"""Opt-in timing of the fan-out's stages, for bench/fanout.py.

With BULKHEAD_FANOUT_TRACE=<path> a replica records when its etcd watch handed it each
revision, when the hub queued it, every stream write (its revisions, when the sender took it
from the queue, when gRPC accepted it) and its own event-loop lag; SIGUSR1 writes all of it to
<path> as JSON. The benchmark joins this with what the agents saw, so it can say which stage
owns the tail instead of guessing. Off (the default) it costs one `is None` test per revision
and per write.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

ENV = "BULKHEAD_FANOUT_TRACE"
LAG_TICK = 0.01


class Tracer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.watched: dict[int, float] = {}     # revision -> the state got it from the watch
        self.queued: dict[int, float] = {}      # revision -> the hub queued it for everyone
        self.writes: list[tuple[str, int, int, float, float]] = []  # node, revs, taken, done
        self.lag: list[tuple[float, float]] = []   # (when, loop oversleep per LAG_TICK)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, self.dump)
        self._task = loop.create_task(self._lag(), name="fanout-trace-lag")

    async def _lag(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_TICK)
            self.lag.append((time.time(), time.monotonic() - before - LAG_TICK))

    def write(self, node: str, first: int, last: int, taken: float) -> None:
        self.writes.append((node, first, last, taken, time.time()))

    def dump(self) -> None:
        data: dict[str, Any] = {"watched": self.watched, "queued": self.queued,
                                "writes": self.writes, "lag": self.lag}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path)


TRACER: Tracer | None = Tracer(Path(os.environ[ENV])) if os.environ.get(ENV) else None
