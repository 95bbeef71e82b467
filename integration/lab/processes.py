"""Long-running lab processes: started detached (they outlive `bulkhead-lab up`), logged to the
lab directory, found again by pid."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

# A pod's processes are started and stopped the same way by the agent (connectivity tests).
from nodeagent.pods.processes import alive, start_ready, stop

__all__ = ["alive", "start", "start_ready", "stop"]


def start(argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(list(argv), stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                   start_new_session=True, env={**os.environ, **(env or {})})
    return process.pid
