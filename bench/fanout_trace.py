"""bulkhead-controlplane with the fan-out tracer installed: how bench/fanout.py starts the
replica whose stages it decomposes (bench/fanout_stages.py).

    python bench/fanout_trace.py TRACE.json [bulkhead-controlplane flags...]

The tracer records when the replica's etcd watch handed it each revision, when the hub queued
it, every stream write (its revisions, when the sender took it from the queue, when gRPC
accepted it) and the replica's own event-loop lag; SIGUSR1 writes all of it to TRACE.json.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane import main as controlplane_main
from controlplane.subscription import trace

LAG_TICK = 0.01


class Tracer:
    """The benchmark's controlplane.subscription.trace.FanoutTracer."""

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


def main() -> None:
    trace.install(Tracer(Path(sys.argv[1])))
    controlplane_main.main(sys.argv[2:])


if __name__ == "__main__":
    main()
