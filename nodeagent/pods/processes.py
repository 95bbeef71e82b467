"""Processes a pod runs (its server): started in their own session so they can be stopped as
a group, found again by pid."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def start_ready(argv: Sequence[str], log: Path, timeout: float = 10.0) -> int:
    """Starts a process that prints `ready` on stdout once it serves."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as err:
        process = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=err,
                                   stdin=subprocess.DEVNULL, start_new_session=True, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if line != "ready":
        stop(process.pid)
        raise RuntimeError(f"{argv[0]} did not start (see {log})")
    return process.pid


def alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split()[2] == "Z":
                return False
    return True


def stop(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left."""
    if pid <= 0:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
        if not alive(pid):
            return
