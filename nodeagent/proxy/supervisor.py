"""The agent's handle on its node's proxy process: start or adopt it, push rules, restart it.

The proxy runs in its own session, so it outlives an agent restart: a new agent finds it
through its control socket and adopts it (the rules it holds stay in force meanwhile), or
starts a fresh one.  A fresh proxy opens no listener until it has its rules, and while no
listener exists the datapath drops redirected SYNs: there is no window in which traffic
passes unchecked.  ``ensure`` (called periodically) restarts a dead proxy and pushes the
last rules again, which re-arms the listener.  Every method blocks: call it off the loop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nodeagent.proxy.control import ProxyControl, ProxyError
from nodeagent.proxy.rules import L7Entry

DEFAULT_PORT = 15001
START_TIMEOUT = 20.0


class ProxySupervisor:
    def __init__(self, control_path: Path, *, netns: str | None = None,
                 port: int = DEFAULT_PORT, python: str = sys.executable) -> None:
        self.control_path = control_path
        self.netns = netns
        self.port = port
        self.python = python
        self.entries: tuple[L7Entry, ...] = ()
        self.ctl: ProxyControl | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.adopted = False

    def command(self) -> list[str]:
        cmd = [self.python, "-m", "nodeagent.proxy", "--control", str(self.control_path)]
        return ["ip", "netns", "exec", self.netns, *cmd] if self.netns else cmd

    def _connect(self) -> ProxyControl | None:
        try:
            return ProxyControl(self.control_path)
        except OSError:
            return None

    def start(self) -> None:
        """Adopt the proxy behind the control socket, or start one; then push the rules."""
        self.ctl = self._connect()
        self.adopted = self.ctl is not None
        if self.ctl is None:
            self._spawn()
        self._push()

    def _spawn(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.control_path.unlink()
        env = dict(os.environ)
        self.proc = subprocess.Popen(self.command(), start_new_session=True, env=env,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ProxyError(f"the proxy exited at start with {self.proc.returncode}")
            if self.control_path.exists():
                self.ctl = self._connect()
                if self.ctl is not None:
                    return
            time.sleep(0.05)
        raise ProxyError("the proxy did not open its control socket in time")

    def _push(self) -> None:
        assert self.ctl is not None
        self.ctl.set(self.port, self.entries)

    def set_entries(self, entries: Iterable[L7Entry]) -> None:
        """Replace the rules (new requests on existing connections use them at once)."""
        self.entries = tuple(entries)
        if self.ctl is not None:
            try:
                self._push()
            except (OSError, ProxyError):
                self.ensure()

    def alive(self) -> bool:
        if self.ctl is None:
            return False
        try:
            self.ctl.stats()
        except (OSError, ProxyError, ValueError):
            return False
        return True

    def ensure(self) -> bool:
        """Restart the proxy if it died and re-arm it; True when it had to."""
        if self.alive():
            return False
        if self.ctl is not None:
            self.ctl.close()
            self.ctl = None
        self._reap()
        self._spawn()
        self._push()
        self.restarts += 1
        return True

    def _reap(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(Exception):
                self.proc.kill()
                self.proc.wait(timeout=5)
            self.proc = None

    def stats(self) -> dict[str, Any]:
        assert self.ctl is not None
        stats = self.ctl.stats()
        stats["restarts"] = self.restarts
        stats["adopted"] = self.adopted
        return stats

    def flows(self) -> list[dict[str, Any]]:
        try:
            return self.ctl.flows() if self.ctl is not None else []
        except (OSError, ProxyError):
            return []

    def pid(self) -> int:
        return int(self.stats()["pid"])

    def stop(self) -> None:
        """End the proxy (agent teardown; a plain agent exit leaves it running)."""
        pid = None
        with contextlib.suppress(Exception):
            pid = self.pid()
        if self.ctl is not None:
            self.ctl.close()
            self.ctl = None
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._reap()
        with contextlib.suppress(FileNotFoundError):
            self.control_path.unlink()
