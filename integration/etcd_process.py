"""A single-member etcd from the Debian binary, as a child process on free loopback ports,
that can be stopped and started again on the same data (restart tests, benchmarks)."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from controlplane.store.embedded import etcd_argv, free_port


@dataclass
class EtcdProcess:
    """A single-member etcd we can stop and start again on the same data and ports."""

    data_dir: Path
    client_port: int
    peer_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self) -> None:
        client = f"http://{self.endpoint}"
        self.process = subprocess.Popen(
            etcd_argv("etcd", "t", self.data_dir, self.client_port, self.peer_port),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{client}/health", timeout=1) as response:
                    if b"true" in response.read():
                        return
            if self.process.poll() is not None:
                raise RuntimeError("etcd exited at start")
            time.sleep(0.05)
        raise RuntimeError("etcd did not become healthy")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@contextlib.contextmanager
def etcd_process() -> Iterator[EtcdProcess]:
    with tempfile.TemporaryDirectory(prefix="bulkhead-etcd-") as tmp:
        etcd = EtcdProcess(Path(tmp) / "data", free_port(), free_port())
        try:
            etcd.start()
            yield etcd
        finally:
            etcd.stop()
