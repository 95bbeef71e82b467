"""Issue 14, stage 2: secure by default. The control plane, the agent and the CLI speak mutual
TLS without any flag; plaintext only with an explicit `--insecure`, which warns loudly."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from bulkhead import tls
from bulkhead.v1 import admin_pb2, admin_pb2_grpc, subscription_pb2, subscription_pb2_grpc
from controlplane.config import from_args
from tests.conftest import eventually
from tests.test_cli import ROOT

ENV = {**{k: v for k, v in os.environ.items() if k != tls.INSECURE_ENV},
       "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'proto'}"}


async def status(channel: grpc.aio.Channel) -> admin_pb2.StatusResponse:
    async with channel:
        return await admin_pb2_grpc.AdminServiceStub(channel).Status(
            admin_pb2.StatusRequest(), timeout=10)


@pytest.fixture
async def insecure_controlplane() -> AsyncIterator[tuple[Path, str, Path]]:
    """`bulkhead-controlplane --insecure` (embedded etcd, temporary state dir); yields the state
    dir, the address and the file its stderr goes to."""
    with tempfile.TemporaryDirectory(prefix="bulkhead-insecure-") as tmp:
        port_file, err_file = Path(tmp) / "port", Path(tmp) / "stderr"
        with err_file.open("wb") as err:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "controlplane.main", "--state-dir", tmp, "--insecure",
                "--listen", "127.0.0.1:0", "--port-file", str(port_file),
                stdout=asyncio.subprocess.DEVNULL, stderr=err, env=ENV)

        async def serving() -> bool:
            assert process.returncode is None, err_file.read_text()
            return port_file.exists()

        try:
            assert await eventually(serving, timeout=60)
            yield Path(tmp), f"127.0.0.1:{port_file.read_text().strip()}", err_file
        finally:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


def test_no_flag_means_tls_and_the_old_flag_is_a_no_op() -> None:
    assert from_args([]).tls and from_args(["--tls"]).tls
    assert not from_args(["--insecure"]).tls
    for bad in (["--insecure", "--tls"], ["--insecure", "--join-listen", "127.0.0.1:1"],
                ["--insecure", "--tls-ca", "a", "--tls-cert", "b", "--tls-key", "c"]):
        with pytest.raises(SystemExit):
            from_args(bad)


async def test_a_controlplane_started_without_flags_refuses_plaintext(
        tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controlplane.main", "--state-dir", str(tmp_path / "state"),
        "--listen", "127.0.0.1:0", "--port-file", str(port_file),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=ENV)
    try:
        assert await eventually(lambda: _exists(port_file), timeout=60)
        address = f"127.0.0.1:{port_file.read_text().strip()}"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await status(grpc.aio.insecure_channel(address))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        admin = tls.Credentials.admin_in(tmp_path / "state")
        assert (await status(tls.aio_channel(address, admin))).replica_id
        assert (tmp_path / "state" / tls.TLS_MARKER).exists()
    finally:
        process.terminate()
        _, err = await process.communicate()
    assert b"--insecure" not in err


async def _exists(path: Path) -> bool:
    return path.exists()


async def test_insecure_warns_loudly_and_serves_plaintext(
        insecure_controlplane: tuple[Path, str, Path]) -> None:
    state_dir, address, err_file = insecure_controlplane
    assert (await status(grpc.aio.insecure_channel(address))).replica_id
    warning = err_file.read_text().splitlines()[0]
    assert warning.startswith("bulkhead-controlplane: WARNING: --insecure") \
        and "development only" in warning.lower(), warning
    assert not (state_dir / tls.TLS_MARKER).exists()
    # The CLI speaks plaintext only when told so (flag or environment).
    cli = [sys.executable, "-m", "cli.main", "--server", address]
    for extra, env in (([], {tls.INSECURE_ENV: "1"}), (["--insecure"], {})):
        done = await asyncio.create_subprocess_exec(
            *cli, *extra, "status", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**ENV, "BULKHEAD_STATE_DIR": str(state_dir),
                                                 **env})
        _, err = await done.communicate()
        assert done.returncode == 0, err
    # Told nothing, it looks for a credential (the admin one is not there: never created).
    done = await asyncio.create_subprocess_exec(
        *cli, "status", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**ENV, "BULKHEAD_STATE_DIR": str(state_dir)})
    _, err = await done.communicate()
    assert done.returncode == 1 and b"no client credential" in err


async def test_the_agent_warns_with_insecure_and_needs_a_credential_without(
        insecure_controlplane: tuple[Path, str, Path], tmp_path: Path) -> None:
    _, address, _ = insecure_controlplane
    base = [sys.executable, "-m", "nodeagent.main", "--node", "plain1", "--datapath",
            "simulated", "--controlplane", address, "--underlay-ip", "192.0.2.21"]
    # Without --insecure: no certificate and no token -> one line saying what to give.
    refused = await asyncio.create_subprocess_exec(
        *base, "--tls-dir", str(tmp_path / "none"), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=ENV)
    _, err = await asyncio.wait_for(refused.communicate(), 60)
    assert refused.returncode == 1
    assert err.decode().strip().endswith("--join-token/--join-token-file to get one (or "
                                         "--insecure for a control plane started with "
                                         "--insecure)"), err
    agent = await asyncio.create_subprocess_exec(
        *base, "--insecure", stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, env=ENV)
    try:
        assert agent.stderr is not None
        first = await asyncio.wait_for(agent.stderr.readline(), 60)
        assert first.startswith(b"bulkhead-agent: WARNING: --insecure"), first
        subs = subscription_pb2_grpc.SubscriptionAdminServiceStub(
            grpc.aio.insecure_channel(address))

        async def subscribed() -> bool:
            listed = await subs.ListSubscriptions(subscription_pb2.ListSubscriptionsRequest())
            return any(s.name == "plain1" and s.connected for s in listed.subscriptions)

        assert await eventually(subscribed, timeout=30)
    finally:
        agent.terminate()
        await agent.communicate()
