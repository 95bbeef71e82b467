"""The RPC fuzz suite's control plane: a replica in its own process on a private etcd."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from aetcd import rpc  # type: ignore[import-untyped]

from integration.etcd_process import etcd_process

VOLATILE = ("replicas/", "subscription-replicas/", "subscriptions/")
"""Keys (under the cluster prefix) the replica writes on its own: its presence and its
subscription status records."""


@dataclass
class FuzzServer:
    process: subprocess.Popen[bytes]
    address: str
    cluster: str
    etcd_channel: grpc.Channel
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def dump(self) -> dict[bytes, tuple[bytes, int]]:
        """Every key of the etcd with its value and mod revision, but VOLATILE ones."""
        response = rpc.KVStub(self.etcd_channel).Range(
            rpc.RangeRequest(key=b"\0", range_end=b"\0"), timeout=30)
        prefix = f"/bulkhead/{self.cluster}/"
        volatile = tuple((prefix + v).encode() for v in VOLATILE)
        return {kv.key: (kv.value, kv.mod_revision) for kv in response.kvs
                if not kv.key.startswith(volatile)}


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[FuzzServer]:
    cluster = f"fz{uuid.uuid4().hex[:10]}"
    with etcd_process() as etcd, tempfile.TemporaryDirectory(prefix="bulkhead-fuzz-") as tmp:
        port_file, log = Path(tmp) / "port", Path(tmp) / "server.log"
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "PYTHONPATH": f"{root}:{root / 'proto'}"
               + (f":{os.environ['PYTHONPATH']}" if os.environ.get("PYTHONPATH") else ""),
               "BULKHEAD_LOG_LEVEL": "warning"}
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.fuzz.server", etcd.endpoint, cluster,
                 str(port_file)], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
        channel = grpc.insecure_channel(etcd.endpoint)
        try:
            deadline = time.monotonic() + 60
            while not port_file.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"fuzz server did not start:\n{log.read_text()}")
                time.sleep(0.05)
            port = int(port_file.read_text())
            yield FuzzServer(process, f"127.0.0.1:{port}", cluster, channel, log)
        finally:
            channel.close()
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
