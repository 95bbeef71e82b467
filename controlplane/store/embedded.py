"""The embedded etcd: a private Debian `etcd` process whose data lives under the state dir.

The control plane supervises it: when it dies (killed, crashed, OOM) it is started again on
the same ports and data dir, after a backoff that doubles up to `MAX_BACKOFF`, so what it had
acknowledged is there again and the etcd client and the cache watch reconnect by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from bulkhead import log

from .etcd import Etcd, EtcdUnavailable, TlsFiles

_log = log.get(__name__)

FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0
"""An etcd that ran this long before dying is restarted after FIRST_BACKOFF again."""


def _die_with_parent() -> None:
    """A control plane killed with SIGKILL must not leave its etcd behind."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    os.setpgrp()  # a Ctrl-C in the terminal reaches only the control plane, which stops etcd


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


EMBEDDED_MAX_TXN_OPS = 4096
"""The embedded etcd's --max-txn-ops: one policy apply is one transaction (an operation per
written policy and a compare per CIDR identity it holds), 256 documents must fit."""


@dataclass(frozen=True)
class EmbeddedTls:
    """The embedded etcd's TLS files (controlplane.pki.etcdtls makes them): its CA, its
    serving certificate, and the client certificate the control plane presents."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path

    def client(self) -> TlsFiles:
        return TlsFiles(self.ca, self.client_cert, self.client_key)

    def argv(self) -> list[str]:
        """Client and peer ports both require a certificate from `ca`."""
        return ["--client-cert-auth", "--trusted-ca-file", str(self.ca),
                "--cert-file", str(self.cert), "--key-file", str(self.key),
                "--peer-client-cert-auth", "--peer-trusted-ca-file", str(self.ca),
                "--peer-cert-file", str(self.cert), "--peer-key-file", str(self.key)]


def etcd_argv(binary: str, name: str, data_dir: Path, client_port: int, peer_port: int, *,
              compaction_retention: str | None = None,
              max_txn_ops: int | None = None, tls: EmbeddedTls | None = None) -> list[str]:
    """The command line of a single-member etcd on loopback ports; with
    `compaction_retention` (a duration, "1h"), etcd keeps that much history and compacts
    older revisions (agents resume with deltas from any replica while their token is within
    it); with `max_txn_ops`, a transaction may hold that many operations (etcd's default is
    128); with `tls`, HTTPS with client-certificate auth on both ports."""
    scheme = "https" if tls is not None else "http"
    client = f"{scheme}://127.0.0.1:{client_port}"
    peer = f"{scheme}://127.0.0.1:{peer_port}"
    argv = [binary, "--name", name, "--data-dir", str(data_dir),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{name}={peer}"]
    if tls is not None:
        argv += tls.argv()
    if compaction_retention is not None:
        argv += ["--auto-compaction-mode", "periodic",
                 "--auto-compaction-retention", compaction_retention]
    if max_txn_ops is not None:
        argv += ["--max-txn-ops", str(max_txn_ops)]
    return argv


@dataclass
class EmbeddedEtcd:
    """Started on free loopback ports; `stop()` ends it cleanly so the next start finds the data."""

    data_dir: Path
    name: str = "bulkhead"
    binary: str = "etcd"
    compaction_retention: str = "1h"
    tls: EmbeddedTls | None = None
    """Client-certificate auth on its ports (the control plane's embedded etcd always)."""
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    restarts: int = 0
    """Times it was started again after it died, since the control plane started."""
    last_exit: str = ""
    """How it last ended unasked, e.g. "killed by SIGKILL at 2026-01-01T00:00:00Z"."""
    _process: asyncio.subprocess.Process | None = None
    _supervisor: asyncio.Task[None] | None = None
    _ready: bool = False

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int | None:
        """The etcd process's id while it runs (started and not yet stopped), else None."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    @property
    def ready(self) -> bool:
        """It runs and answered since it was (re)started."""
        return self.pid is not None and self._ready

    async def start(self, timeout: float = 20.0) -> None:
        binary = shutil.which(self.binary) or "/usr/bin/etcd"
        if not Path(binary).exists():
            raise RuntimeError("etcd is not installed (Debian package etcd-server); "
                               "run `make setup-run`")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._ready = False
        log_file = (self.data_dir.parent / f"{self.data_dir.name}.log").open("ab")
        self._process = await asyncio.create_subprocess_exec(
            *etcd_argv(binary, self.name, self.data_dir, self.client_port, self.peer_port,
                       compaction_retention=self.compaction_retention,
                       max_txn_ops=EMBEDDED_MAX_TXN_OPS, tls=self.tls),
            stdout=log_file, stderr=log_file, preexec_fn=_die_with_parent,
        )
        log_file.close()
        probe = Etcd([self.endpoint], timeout=1.0,
                     tls=self.tls.client() if self.tls is not None else None)
        process = self._process
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"etcd exited with {process.returncode}; see "
                                       f"{self.data_dir.parent / (self.data_dir.name + '.log')}")
                try:
                    await probe.status()
                    break
                except EtcdUnavailable:
                    if asyncio.get_running_loop().time() > deadline:
                        raise RuntimeError("embedded etcd did not become ready") from None
                    await asyncio.sleep(0.1)
        except BaseException:
            await _end(process)   # never two etcds on one data dir
            raise
        finally:
            await probe.close()
        self._ready = True
        _log.info("embedded etcd started", endpoint=self.endpoint, data_dir=str(self.data_dir),
                  pid=process.pid)

    def supervise(self) -> None:
        """Restarts etcd whenever it dies, until `stop()`; call once, after `start()`."""
        self._supervisor = asyncio.create_task(self._supervise(), name="embedded-etcd")

    async def _supervise(self) -> None:
        backoff = FIRST_BACKOFF
        loop = asyncio.get_running_loop()
        while True:
            process = self._process
            if process is None:
                return
            started = loop.time()
            code = await process.wait()
            if self._process is not process:
                return   # stopped on purpose
            self.last_exit = f"{_describe(code)} at {_now()}"
            if loop.time() - started >= STABLE_AFTER:
                backoff = FIRST_BACKOFF
            _log.error("embedded etcd died; restarting it", exit=self.last_exit,
                       restart_in=backoff, restarts=self.restarts)
            while True:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                try:
                    await self.start()
                except RuntimeError as exc:
                    _log.error("embedded etcd restart failed", error=str(exc), retry_in=backoff)
                    continue
                self.restarts += 1
                _log.warning("embedded etcd restarted", pid=self.pid, restarts=self.restarts)
                break

    async def stop(self) -> None:
        process, self._process = self._process, None
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        if process is None or process.returncode is not None:
            return
        await _end(process)
        _log.info("embedded etcd stopped")


async def _end(process: asyncio.subprocess.Process) -> None:
    """Terminates the process, killing it when it has not ended after 10 s."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 10)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with {code}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
