"""The web console against a `--tls` control plane: it calls with the credential it is given
(the CLI's own), and what the role may not do is refused, not hidden."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bulkhead import tls as btls
from cli.console.backend import Backend
from cli.console.server import make_app
from integration.lab.story import POLICY
from tests.security.tlsfixtures import TlsReplica, TlsReplicaFactory

pytestmark = pytest.mark.timeout(60)


async def start(backend: Backend) -> TestClient[Any, Any]:
    client = TestClient(TestServer(make_app(backend, follow_flows=False)))
    await client.start_server()
    return client


def files(pem: btls.Pem, folder: Path) -> btls.Credentials:
    folder.mkdir()
    for name, data in (("ca", pem.ca), ("cert", pem.cert), ("key", pem.key)):
        (folder / f"{name}.pem").write_bytes(data)
    return btls.Credentials(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")


async def test_the_console_speaks_with_the_credential_it_is_given(
        tls_replicas: TlsReplicaFactory, tmp_path: Path) -> None:
    replica: TlsReplica = await tls_replicas()
    admin = replica.admin()
    client = await start(Backend(replica.address, admin.ca, admin.cert, admin.key))
    try:
        applied = await client.post("/api/apply", json={"yaml": POLICY.read_text()})
        assert applied.status == 200
        assert (await applied.json())["actions"] == ["ciliumnetworkpolicy default/rule1 created"]
    finally:
        await client.close()
    reader = files(replica.credential("dashboard", "reader"), tmp_path / "reader")
    client = await start(Backend(replica.address, reader.ca, reader.cert, reader.key))
    try:
        listed = await (await client.get("/api/policies")).json()
        assert [p["name"] for p in listed["policies"]] == ["rule1"]
        impact = await client.post("/api/impact", json={"remove": ["default/rule1"]})
        assert impact.status == 200   # a what-if stores nothing: a reader may ask it
        refused = await client.post("/api/apply", json={"remove": ["default/rule1"]})
        assert refused.status == 403
        assert "PERMISSION_DENIED" in (await refused.json())["error"]
    finally:
        await client.close()
    client = await start(Backend(replica.address, insecure=True))   # plaintext to a TLS port
    try:
        cut = await client.get("/api/cluster")
        assert cut.status == 502
        assert (await cut.json())["error"].startswith(
            f"cannot reach the control plane at {replica.address}")
    finally:
        await client.close()
