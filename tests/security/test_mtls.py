"""Item 2 of issue 14: a control plane serves mutual TLS only (the default); the CLI finds the
admin credential where it finds the server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from bulkhead import tls
from bulkhead.rpcerror import EXIT_UNREACHABLE
from bulkhead.v1 import admin_pb2, admin_pb2_grpc, security_pb2, security_pb2_grpc
from controlplane.pki import certs
from nodeagent.credentials import csr
from tests.conftest import eventually
from tests.security.tlsfixtures import TlsReplicaFactory
from tests.test_cli import ROOT


async def status(channel: grpc.aio.Channel) -> admin_pb2.StatusResponse:
    async with channel:
        return await admin_pb2_grpc.AdminServiceStub(channel).Status(
            admin_pb2.StatusRequest(), timeout=10)


async def test_admin_certificate_is_served(tls_replicas: TlsReplicaFactory) -> None:
    replica = await tls_replicas()
    answer = await status(replica.channel(replica.admin()))
    assert answer.replica_id == replica.cp.config.replica_id


async def test_no_certificate_or_plaintext_is_refused(tls_replicas: TlsReplicaFactory) -> None:
    replica = await tls_replicas()
    for channel in (grpc.aio.insecure_channel(replica.address),
                    grpc.aio.secure_channel(replica.address, grpc.ssl_channel_credentials(
                        root_certificates=replica.tls.ca_pem))):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await status(channel)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_the_unix_socket_requires_a_certificate_too(tls_replicas: TlsReplicaFactory,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "cp.sock"
    replica = await tls_replicas(unix_socket=str(path))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await status(grpc.aio.insecure_channel(f"unix:{path}"))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    answer = await status(tls.aio_channel(f"unix:{path}", replica.admin()))
    assert answer.replica_id == replica.cp.config.replica_id


async def test_a_certificate_from_another_ca_is_refused(
        tls_replicas: TlsReplicaFactory) -> None:
    replica = await tls_replicas()
    stranger = certs.CA.create("elsewhere")
    forged = replica.credential("admin", certs.ADMIN, ca=stranger)  # same name, wrong CA
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await status(replica.channel(forged))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_second_replica_accepts_the_first_ones_admin(
        tls_replicas: TlsReplicaFactory) -> None:
    a, b = await tls_replicas(), await tls_replicas()
    assert (await status(b.channel(a.admin()))).replica_id == b.cp.config.replica_id


@pytest.fixture
async def tls_controlplane() -> AsyncIterator[tuple[Path, str]]:
    """A real `bulkhead-controlplane`, started without any flag but its state dir and port
(TLS is the default), with its embedded etcd in a temporary state dir."""
    with tempfile.TemporaryDirectory(prefix="bulkhead-tls-") as tmp:
        port_file = Path(tmp) / "port"
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "controlplane.main", "--state-dir", tmp,
            "--listen", "127.0.0.1:0", "--port-file", str(port_file),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'proto'}"})

        async def serving() -> bool:
            assert process.returncode is None, "the control plane exited"
            return port_file.exists()

        try:
            assert await eventually(serving, timeout=60)
            yield Path(tmp), f"127.0.0.1:{port_file.read_text().strip()}"
        finally:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


async def cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("BULKHEAD_TLS_", "BULKHEAD_SERVER", "BULKHEAD_STATE_DIR",
                                  tls.INSECURE_ENV))}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**clean, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'proto'}", **env})
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_against_a_tls_controlplane(tls_controlplane: tuple[Path, str],
                                              tmp_path: Path) -> None:
    state_dir, address = tls_controlplane
    # As `make run` users do: only the state dir, where the server and the credential are.
    rc, out, err = await cli("status", "-o", "json", env={"BULKHEAD_STATE_DIR": str(state_dir)})
    assert rc == 0, err
    assert json.loads(out)["replica_id"]
    admin = tls.Credentials.admin_in(state_dir)
    elsewhere = {"BULKHEAD_STATE_DIR": str(tmp_path)}
    # Flags, and the environment, with the server named.
    rc, out, err = await cli("--server", address, "--tls-ca", str(admin.ca), "--tls-cert",
                             str(admin.cert), "--tls-key", str(admin.key), "node", "list",
                             env=elsewhere)
    assert rc == 0, err
    rc, _, err = await cli("--server", address, "status", env={
        **elsewhere, "BULKHEAD_TLS_CA": str(admin.ca), "BULKHEAD_TLS_CERT": str(admin.cert),
        "BULKHEAD_TLS_KEY": str(admin.key)})
    assert rc == 0, err
    # Without a credential the CLI says where it looked and what to give, in one line; half
    # the flags is a one-line error too.
    rc, _, err = await cli("--server", address, "status", env=elsewhere)
    assert rc == 1 and err.startswith(f"bulkhead: no client credential (none in {tmp_path}/tls)")
    assert "--insecure" in err and len(err.strip().splitlines()) == 1
    # Plaintext (asked for explicitly) does not reach a TLS control plane.
    for insecure in (["--insecure"], []):
        rc, _, err = await cli("--server", address, *insecure, "status",
                               env={**elsewhere, **({} if insecure else {tls.INSECURE_ENV: "1"})})
        assert rc == EXIT_UNREACHABLE and "cannot reach the control plane" in err
    rc, _, err = await cli("--server", address, "--tls-ca", str(admin.ca), "status",
                           env=elsewhere)
    assert rc == 1 and err.strip() == ("bulkhead: --tls-cert, --tls-key missing (give "
                                       "--tls-ca, --tls-cert and --tls-key together)")


async def test_operator_files_instead_of_generated_ones(tls_replicas: TlsReplicaFactory,
                                                       tmp_path: Path) -> None:
    """--tls-ca/--tls-cert/--tls-key: the operator's CA decides; nothing is generated, and
    without --tls-ca-key the replica cannot sign a join."""
    ca = certs.CA.create("company")
    key = certs.new_key()
    server = ca.issue(key.public_key(), tls.CONTROLPLANE_NAME, certs.ADMIN,
                      server_names=["127.0.0.1", "localhost"])
    files = {"ca.pem": certs.cert_pem(ca.cert), "server.pem": certs.cert_pem(server),
             "server.key": certs.key_pem(key)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    replica = await tls_replicas(tls_ca=tmp_path / "ca.pem", tls_cert=tmp_path / "server.pem",
                                 tls_key=tmp_path / "server.key")
    assert not (replica.state_dir / tls.TLS_DIR).exists()
    admin = replica.credential("ops", certs.ADMIN, ca=ca)
    assert (await status(replica.channel(admin))).replica_id == replica.cp.config.replica_id
    async with replica.channel(admin) as channel:
        token = (await security_pb2_grpc.SecurityServiceStub(channel).CreateToken(
            security_pb2.CreateTokenRequest())).token
    async with replica.join_channel() as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await security_pb2_grpc.SecurityServiceStub(channel).Join(
                security_pb2.JoinRequest(token=token, csr=csr(certs.new_key(), "n1")))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "--tls-ca-key" in (refused.value.details() or "")
