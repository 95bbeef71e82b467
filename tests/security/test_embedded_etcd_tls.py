"""Issue 14, stage 2: the embedded etcd listens on loopback and admits only a client
certificate of its own CA, the one the control plane presents; not plaintext, not a client
without a certificate, not even the cluster CA's admin (or any node) certificate."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from bulkhead import tls
from controlplane.app import ControlPlane
from controlplane.clustermesh import access
from controlplane.clustermesh.syncer import WATCHED
from controlplane.config import Config
from controlplane.pki import bootstrap, etcdtls
from controlplane.store import etcd as ops
from controlplane.store import etcdauth
from controlplane.store.etcd import (
    Etcd,
    EtcdPermissionDenied,
    EtcdUnavailable,
    TlsFiles,
    prefix_end,
)
from controlplane.store.keys import Keys


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
    files = etcdtls.client(tmp_path, "clustermesh-c9")
    assert files.cacert and files.cert and files.key
    assert oct(files.key.stat().st_mode & 0o777) == "0o600"
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
        "clustermesh-c9"
    assert etcdtls.client(tmp_path, "clustermesh-c9") == files
    assert files.cert.read_bytes() == cert.public_bytes(serialization.Encoding.PEM)
    assert etcdtls.issued(tmp_path) == ["clustermesh-c9"]
    # the control plane's own client certificate is left as it was
    assert etcdtls.ensure(tmp_path).client_cert.read_bytes() == \
        (tmp_path / tls.TLS_DIR / etcdtls.ETCD_DIR / "client.crt").read_bytes()


async def _refused(attempt: Awaitable[object]) -> None:
    with pytest.raises(EtcdPermissionDenied, match="permission denied"):
        await attempt


async def test_a_remote_credential_reads_what_a_syncer_reads_and_writes_nothing(
        tmp_path: Path) -> None:
    """Issue 13: etcd itself enforces that the credential a cluster hands a remote is
    read-only: its CN is an etcd user whose only role reads the cluster-info key and the
    mirrored range; the control plane's own certificate is root."""
    name = "etcdro"
    old = etcdtls.client(tmp_path, "clustermesh-old")   # issued before the start: upgraded
    cp = ControlPlane(Config(state_dir=tmp_path, listen="127.0.0.1:0", cluster_name=name))
    await cp.start()
    readers: list[Etcd] = []
    try:
        assert cp.embedded is not None
        await bootstrap.ensure(tmp_path, cp.etcd, name, "127.0.0.1")
        new = etcdtls.client(tmp_path, "clustermesh-new")   # issued while it runs
        await access.allow_remote(cp.etcd, name, "clustermesh-new")
        keys = Keys(name)
        node = keys.node("n1")
        await cp.etcd.put(node, b"{}")   # the control plane writes (root)
        for files in (old, new):
            reader = Etcd([cp.embedded.endpoint], tls=files, timeout=5.0)
            readers.append(reader)
            assert await reader.get(keys.cluster_info) is not None
            assert (await reader.get(node)) is not None
            kvs, _, _ = await reader.range(keys.nodes)
            assert [kv.key for kv in kvs] == [node]
            # a watch of the mirrored range, as a syncer opens it, is created
            call = reader.watch(keys.prefix + WATCHED[0], 0,
                                end=prefix_end(keys.prefix + WATCHED[1]))
            created = await anext(aiter(call))
            assert created.created and not created.canceled, created
            call.cancel()
            # ... but writes of any kind are refused by etcd
            await _refused(reader.put(node, b"stolen"))
            await _refused(reader.put(keys.cluster_info, b"stolen"))
            await _refused(reader.txn([], [ops.delete(keys.prefix, prefix=True)]))
            # ... and so is reading what a syncer does not need: the credentials this
            # cluster holds for other clusters, the PKI (the cluster CA's key)
            await _refused(reader.range(keys.mesh_remotes))
            await _refused(reader.get(bootstrap.ca_key_path(name)))
            await _refused(reader.range("/"))
        assert (await cp.etcd.get(node)) is not None and \
            (await cp.etcd.get(node)).value == b"{}"   # type: ignore[union-attr]
        # removing the user revokes the credential
        assert await etcdauth.remove_user(cp.etcd, "clustermesh-new")
        await _refused(readers[1].get(node))
    finally:
        for reader in readers:
            await reader.close()
        await cp.stop()
    # a restart (auth already on) keeps it as it is: idempotent
    cp = ControlPlane(Config(state_dir=tmp_path, listen="127.0.0.1:0", cluster_name=name))
    await cp.start()
    try:
        assert cp.embedded is not None
        reader = Etcd([cp.embedded.endpoint], tls=old, timeout=5.0)
        try:
            assert (await reader.get(Keys(name).node("n1"))) is not None
            await _refused(reader.put(Keys(name).node("n1"), b"x"))
        finally:
            await reader.close()
    finally:
        await cp.stop()


@pytest.mark.parametrize("name", ["client", "ca", "Upper", "../x", ""])
def test_a_client_certificate_name_that_would_clash_or_escape_is_refused(
        tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="etcd client name"):
        etcdtls.client(tmp_path, name)
