"""The etcd a control plane embeds is supervised: killed, it comes back on the same data, the
API serves again, the cache follows, and `bulkhead status` says it happened."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from bulkhead.v1 import admin_pb2, admin_pb2_grpc, identity_pb2, identity_pb2_grpc
from tests.conftest import eventually
from tests.test_cli import ROOT, bulkhead


def ppid_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
async def controlplane() -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """A real `bulkhead-controlplane` with its embedded etcd in a temporary state dir."""
    with tempfile.TemporaryDirectory(prefix="bulkhead-embedded-") as tmp:
        port_file = Path(tmp) / "port"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "controlplane.main", "--state-dir", tmp, "--insecure",
            "--listen", "127.0.0.1:0", "--port-file", str(port_file),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'proto'}"})

        async def serving() -> bool:
            assert process.returncode is None, "the control plane exited"
            return port_file.exists()

        try:
            assert await eventually(serving, timeout=60)
            yield process, f"127.0.0.1:{port_file.read_text().strip()}"
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 30)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def test_killed_embedded_etcd_is_restarted_with_its_data(
        controlplane: tuple[asyncio.subprocess.Process, str]) -> None:
    process, address = controlplane
    channel = grpc.aio.insecure_channel(address)
    identities = identity_pb2_grpc.IdentityServiceStub(channel)
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    before = await identities.Allocate(identity_pb2.AllocateIdentityRequest(
        labels=["k8s:app=before"]))
    status = await admin.Status(admin_pb2.StatusRequest())
    etcd_pid = status.embedded_etcd.pid
    assert status.embedded_etcd.running and status.embedded_etcd.restarts == 0
    assert Path(f"/proc/{etcd_pid}/comm").read_text().strip() == "etcd"
    assert ppid_of(etcd_pid) == process.pid
    argv = Path(f"/proc/{etcd_pid}/cmdline").read_bytes().split(b"\0")
    # An hour of history by default: agents resume with deltas on fresh replicas within it.
    assert argv[argv.index(b"--auto-compaction-mode") + 1] == b"periodic"
    assert argv[argv.index(b"--auto-compaction-retention") + 1] == b"1h"

    for round_ in (1, 2):   # the second time too: the supervisor and the watch recover again
        os.kill(etcd_pid, signal.SIGKILL)

        async def restarted(count: int = round_) -> bool:
            status = await admin.Status(admin_pb2.StatusRequest())
            return status.embedded_etcd.restarts == count and status.etcd.healthy

        assert await eventually(restarted, timeout=60)
        embedded = (await admin.Status(admin_pb2.StatusRequest())).embedded_etcd
        assert embedded.running and embedded.pid not in (0, etcd_pid)
        assert embedded.last_exit.startswith("killed by SIGKILL at ")
        assert ppid_of(embedded.pid) == process.pid
        etcd_pid = embedded.pid

        # Writes work again, what was there before is still there, and the cache follows.
        after = await identities.Allocate(identity_pb2.AllocateIdentityRequest(
            labels=[f"k8s:app=after{round_}"]))
        again = await identities.Allocate(identity_pb2.AllocateIdentityRequest(
            labels=["k8s:app=before"]))
        assert again.id == before.id and after.id != before.id

        async def listed(ident: int = after.id) -> bool:
            page = await admin.ListIdentities(admin_pb2.ListIdentitiesRequest())
            return {before.id, ident} <= {i.id for i in page.identities}

        assert await eventually(listed, timeout=30)
    rc, out, err = await bulkhead(address, "status")
    assert rc == 0, err
    assert "2 restart(s), last died: killed by SIGKILL" in out
    await channel.close()

    # Stopping the control plane stops the etcd it restarted.
    process.terminate()
    assert await process.wait() == 0

    async def etcd_gone() -> bool:
        return not alive(embedded.pid)

    assert await eventually(etcd_gone, timeout=30)
