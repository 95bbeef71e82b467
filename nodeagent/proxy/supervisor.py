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
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from nodeagent.proxy.control import ProxyControl, ProxyError
from nodeagent.proxy.rules import L7Entry

DEFAULT_PORT = 15001
START_TIMEOUT = 20.0

T = TypeVar("T")


def _locked(method: Callable[..., T]) -> Callable[..., T]:
    """One control-channel exchange at a time (callers run on several threads)."""
    def wrapper(self: ProxySupervisor, *args: Any, **kwargs: Any) -> T:
        with self.lock:
            return method(self, *args, **kwargs)
    wrapper.__doc__ = method.__doc__
    return wrapper


def in_netns(netns: str | None, cmd: list[str]) -> list[str]:
    """``cmd`` run in a network namespace (a name under /var/run/netns, or a path)."""
    if not netns:
        return cmd
    if netns.startswith("/"):
        return ["nsenter", f"--net={netns}", "--", *cmd]
    return ["ip", "netns", "exec", netns, *cmd]


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
        self.lock = threading.RLock()
        self.last_stats: dict[str, Any] | None = None
        """The counters of the last liveness check (None: down)."""

    def command(self) -> list[str]:
        cmd = [self.python, "-m", "nodeagent.proxy", "--control", str(self.control_path)]
        return in_netns(self.netns, cmd)

    def _connect(self) -> ProxyControl | None:
        try:
            return ProxyControl(self.control_path)
        except OSError:
            return None

    @_locked
    def start(self) -> None:
        """Adopt the proxy behind the control socket, or start one; then push the rules."""
        self.ctl = self._connect()
        self.adopted = self.ctl is not None
        if self.ctl is None:
            self._spawn()
            self._push()  # opens the listener (no rules yet: every request is denied)
        # An adopted proxy keeps the rules it holds until the reconciler sends the current
        # ones: its connections neither break nor pass unchecked meanwhile.

    def _spawn(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.control_path.unlink()
        env = dict(os.environ)
        # Same process group as the agent: stopping the group (the lab) stops the proxy; an
        # agent killed alone leaves it running for the next agent to adopt.
        self.proc = subprocess.Popen(self.command(), env=env, stdin=subprocess.DEVNULL)
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

    @_locked
    def set_entries(self, entries: Iterable[L7Entry]) -> None:
        """Replace the rules (new requests on existing connections use them at once)."""
        self.entries = tuple(entries)
        if self.ctl is not None:
            try:
                self._push()
            except (OSError, ProxyError):
                self.ensure()

    @_locked
    def alive(self) -> bool:
        self.last_stats = None
        if self.ctl is None:
            return False
        try:
            self.last_stats = self.ctl.stats()
        except (OSError, ProxyError, ValueError):
            return False
        return True

    @_locked
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

    @_locked
    def stats(self) -> dict[str, Any]:
        assert self.ctl is not None
        stats = self.ctl.stats()
        stats["restarts"] = self.restarts
        stats["adopted"] = self.adopted
        return stats

    @_locked
    def flows(self) -> list[dict[str, Any]]:
        try:
            return self.ctl.flows() if self.ctl is not None else []
        except (OSError, ProxyError):
            return []

    @_locked
    def detach(self) -> None:
        """Let go of the proxy, leaving it running (agent exit: the next agent adopts it)."""
        if self.ctl is not None:
            self.ctl.close()
            self.ctl = None
        self.proc = None

    def pid(self) -> int:
        return int(self.stats()["pid"])

    @_locked
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


def stop_orphan(control_path: Path) -> None:
    """End the proxy behind `control_path` whose agent is gone for good (a node torn down):
    it would otherwise wait 30 s for an agent to adopt it."""
    sup = ProxySupervisor(control_path)
    sup.ctl = sup._connect()
    if sup.ctl is not None:
        sup.stop()
