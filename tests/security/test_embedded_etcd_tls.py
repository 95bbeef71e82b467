"""Issue 14, stage 2: the embedded etcd listens on loopback and admits only a client
certificate of its own CA, the one the control plane presents; not plaintext, not a client
without a certificate, not even the cluster CA's admin (or any node) certificate."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from bulkhead import tls
from controlplane.app import ControlPlane
from controlplane.config import Config
from controlplane.pki import bootstrap, etcdtls
from controlplane.store.etcd import Etcd, EtcdUnavailable, TlsFiles


async def test_the_embedded_etcd_refuses_a_client_without_its_certificate(
        tmp_path: Path) -> None:
    cp = ControlPlane(Config(state_dir=tmp_path, listen="127.0.0.1:0",
                             cluster_name="etcdtls"))
    await cp.start()
    try:
        assert cp.embedded is not None and cp.embedded.pid is not None
        argv = Path(f"/proc/{cp.embedded.pid}/cmdline").read_bytes().decode().split("\0")
        assert "--client-cert-auth" in argv and "--peer-client-cert-auth" in argv
        for flag in ("--listen-client-urls", "--listen-peer-urls"):
            assert argv[argv.index(flag) + 1].startswith("https://127.0.0.1:"), argv
        await bootstrap.ensure(tmp_path, cp.etcd, "etcdtls", "127.0.0.1")
        admin = tls.Credentials.admin_in(tmp_path)
        files = tmp_path / tls.TLS_DIR / etcdtls.ETCD_DIR
        assert {p.name: oct(p.stat().st_mode & 0o777) for p in files.iterdir()} == dict.fromkeys(
            ["ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key"],
            "0o600")
        assert oct(files.stat().st_mode & 0o777) == "0o700"
        endpoint = cp.embedded.endpoint
        for refused in (None, TlsFiles(files / "ca.crt"),
                        TlsFiles(files / "ca.crt", admin.cert, admin.key)):
            client = Etcd([endpoint], tls=refused, timeout=2.0)
            try:
                with pytest.raises(EtcdUnavailable):
                    await client.get("/bulkhead/")
            finally:
                await client.close()
        allowed = Etcd([endpoint], tls=TlsFiles(files / "ca.crt", files / "client.crt",
                                                files / "client.key"))
        try:
            found = await allowed.get(bootstrap.ca_key_path("etcdtls"))
            assert found is not None and b"BEGIN CERTIFICATE" in found.value
        finally:
            await allowed.close()
    finally:
        await cp.stop()


async def test_restarts_reuse_the_etcd_credentials(tmp_path: Path) -> None:
    first = etcdtls.ensure(tmp_path)
    before = {p: p.read_bytes() for p in (first.ca, first.cert, first.client_cert)}
    second = etcdtls.ensure(tmp_path)
    assert second == first and {p: p.read_bytes() for p in before} == before


async def test_a_client_certificate_for_a_remote_clusters_syncer(tmp_path: Path) -> None:
    """What `clustermesh connect` is handed for this cluster's etcd (the lab does it): the
    etcd's CA and a certificate of it with a CN of its own, 0600, reused while fresh."""
    cp = ControlPlane(Config(state_dir=tmp_path, listen="127.0.0.1:0",
                             cluster_name="etcdclient"))
    await cp.start()
    try:
        assert cp.embedded is not None
        files = etcdtls.client(tmp_path, "clustermesh-c9")
        assert files.cacert and files.cert and files.key
        assert oct(files.key.stat().st_mode & 0o777) == "0o600"
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
            "clustermesh-c9"
        assert etcdtls.client(tmp_path, "clustermesh-c9") == files
        assert files.cert.read_bytes() == cert.public_bytes(serialization.Encoding.PEM)
        reader = Etcd([cp.embedded.endpoint], tls=files)
        try:
            await cp.etcd.put("/lab-probe", b"x")
            found = await reader.get("/lab-probe")
            assert found is not None and found.value == b"x"
        finally:
            await reader.close()
        # the control plane's own client certificate is left as it was
        assert etcdtls.ensure(tmp_path).client_cert.read_bytes() == \
            (tmp_path / tls.TLS_DIR / etcdtls.ETCD_DIR / "client.crt").read_bytes()
    finally:
        await cp.stop()


@pytest.mark.parametrize("name", ["client", "ca", "Upper", "../x", ""])
def test_a_client_certificate_name_that_would_clash_or_escape_is_refused(
        tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="etcd client name"):
        etcdtls.client(tmp_path, name)
