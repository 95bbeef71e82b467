"""The embedded etcd: a private Debian `etcd` process whose data lives under the state dir."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path

from bulkhead import log

from .etcd import Etcd, EtcdUnavailable

_log = log.get(__name__)


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


def etcd_argv(binary: str, name: str, data_dir: Path, client_port: int, peer_port: int, *,
              compaction_retention: int | None = None,
              max_txn_ops: int | None = None) -> list[str]:
    """The command line of a single-member etcd on loopback ports; with
    `compaction_retention`, etcd keeps that many revisions and compacts older ones; with
    `max_txn_ops`, a transaction may hold that many operations (etcd's default is 128)."""
    client = f"http://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    argv = [binary, "--name", name, "--data-dir", str(data_dir),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{name}={peer}"]
    if compaction_retention is not None:
        argv += ["--auto-compaction-mode", "revision",
                 "--auto-compaction-retention", str(compaction_retention)]
    if max_txn_ops is not None:
        argv += ["--max-txn-ops", str(max_txn_ops)]
    return argv


@dataclass
class EmbeddedEtcd:
    """Started on free loopback ports; `stop()` ends it cleanly so the next start finds the data."""

    data_dir: Path
    name: str = "bulkhead"
    binary: str = "etcd"
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    _process: asyncio.subprocess.Process | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int | None:
        """The etcd process's id while it runs (started and not yet stopped), else None."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def start(self, timeout: float = 20.0) -> None:
        binary = shutil.which(self.binary) or "/usr/bin/etcd"
        if not Path(binary).exists():
            raise RuntimeError("etcd is not installed (Debian package etcd-server); "
                               "run `make setup-run`")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_file = (self.data_dir.parent / f"{self.data_dir.name}.log").open("ab")
        self._process = await asyncio.create_subprocess_exec(
            *etcd_argv(binary, self.name, self.data_dir, self.client_port, self.peer_port,
                       compaction_retention=100_000, max_txn_ops=EMBEDDED_MAX_TXN_OPS),
            stdout=log_file, stderr=log_file, preexec_fn=_die_with_parent,
        )
        log_file.close()
        probe = Etcd([self.endpoint], timeout=1.0)
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while True:
                if self._process.returncode is not None:
                    raise RuntimeError(f"etcd exited with {self._process.returncode}; see "
                                       f"{self.data_dir.parent / (self.data_dir.name + '.log')}")
                try:
                    await probe.status()
                    break
                except EtcdUnavailable:
                    if asyncio.get_running_loop().time() > deadline:
                        raise RuntimeError("embedded etcd did not become ready") from None
                    await asyncio.sleep(0.1)
        finally:
            await probe.close()
        _log.info("embedded etcd started", endpoint=self.endpoint, data_dir=str(self.data_dir))

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            with contextlib.suppress(ProcessLookupError):
                await process.wait()
        _log.info("embedded etcd stopped")
