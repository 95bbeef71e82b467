"""TLS-enabled control planes for the security tests: in-process replicas on the session etcd,
and credentials issued by a cluster's CA (or by a stranger's)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from bulkhead import tls as btls
from controlplane.app import ControlPlane
from controlplane.config import Config
from controlplane.pki import bootstrap, certs
from controlplane.pki.bootstrap import ServerTls
from controlplane.server import add_join_port, build_server
from integration.etcd_process import EtcdProcess


@dataclass
class TlsReplica:
    cp: ControlPlane
    server: grpc.aio.Server
    address: str
    tls: ServerTls
    state_dir: Path
    join_address: str

    @property
    def ca(self) -> certs.CA:
        assert self.tls.signer is not None
        return self.tls.signer

    def credential(self, name: str, role: str, ca: certs.CA | None = None) -> btls.Pem:
        """A client credential for `name` in `role`, from this cluster's CA (or `ca`)."""
        ca = ca or self.ca
        key = certs.new_key()
        cert = ca.issue(key.public_key(), name, role)
        return btls.Pem(self.tls.ca_pem, certs.cert_pem(cert), certs.key_pem(key))

    def admin(self) -> btls.Credentials:
        return btls.Credentials.admin_in(self.state_dir)

    def join_channel(self) -> grpc.aio.Channel:
        """The join port as a node without a certificate sees it (it checks the server)."""
        return grpc.aio.secure_channel(self.join_address, grpc.ssl_channel_credentials(
            root_certificates=self.tls.ca_pem))

    def channel(self, material: btls.Material | None) -> grpc.aio.Channel:
        return btls.aio_channel(self.address, material)

    async def stop(self) -> None:
        await self.server.stop(grace=0.5)
        await self.cp.stop()


TlsReplicaFactory = Callable[..., Awaitable[TlsReplica]]


@pytest.fixture
async def tls_replicas(etcd: EtcdProcess, cluster_name: str,
                       tmp_path: Path) -> AsyncIterator[TlsReplicaFactory]:
    """Starts `--tls` replicas (each with its own state dir) against the session etcd."""
    started: list[TlsReplica] = []

    async def factory(unix_socket: str | None = None, **overrides: object) -> TlsReplica:
        state_dir = tmp_path / f"replica{len(started)}"
        config = Config(etcd_endpoints=[etcd.endpoint], cluster_name=cluster_name,
                        state_dir=state_dir, listen="127.0.0.1:0", tls=True,
                        **overrides)  # type: ignore[arg-type]
        cp = ControlPlane(config)
        await cp.start()
        server_tls = await bootstrap.for_config(config, cp.etcd)
        assert server_tls is not None
        server, port = await build_server(cp, "127.0.0.1:0", unix_socket, tls=server_tls)
        join_port = add_join_port(server, "127.0.0.1:0", server_tls)
        await server.start()
        replica = TlsReplica(cp, server, f"127.0.0.1:{port}", server_tls, state_dir,
                             f"127.0.0.1:{join_port}")
        started.append(replica)
        return replica

    try:
        yield factory
    finally:
        for replica in started:
            with contextlib.suppress(Exception):
                await replica.stop()
