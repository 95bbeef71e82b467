"""Item 1 of issue 14: the cluster CA, the replica's certificate and the admin credential a
`--tls` control plane creates, keeps private, reuses, and shares with the other replicas."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest
from cryptography import x509

from bulkhead.tls import TLS_DIR
from controlplane.pki import bootstrap, certs
from controlplane.store import etcd as ops
from controlplane.store.etcd import Etcd
from integration.etcd_process import EtcdProcess

FILES = ["ca.crt", "ca.key", "server.crt", "server.key", "admin.crt", "admin.key"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_first_start_creates_private_files_and_later_starts_reuse_them(
        etcd: EtcdProcess, cluster_name: str, tmp_path: Path) -> None:
    client = Etcd([etcd.endpoint])
    try:
        await bootstrap.ensure(tmp_path, client, cluster_name, "127.0.0.1")
        directory = tmp_path / TLS_DIR
        assert mode(directory) == 0o700
        assert sorted(p.name for p in directory.iterdir()) == sorted(FILES)
        assert {p.name: mode(p) for p in directory.iterdir()} == dict.fromkeys(FILES, 0o600)
        before = {name: (directory / name).read_bytes() for name in FILES}
        server = x509.load_pem_x509_certificate(before["server.crt"])
        sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {"localhost", socket.gethostname()} <= set(sans.get_values_for_type(x509.DNSName))
        assert "127.0.0.1" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
        admin = certs.subject_of(x509.load_pem_x509_certificate(before["admin.crt"]))
        assert (admin.name, admin.role) == ("admin", "admin")

        await bootstrap.ensure(tmp_path, client, cluster_name, "127.0.0.1")
        assert {name: (directory / name).read_bytes() for name in FILES} == before
    finally:
        await client.close()


async def test_replicas_sharing_an_etcd_share_one_ca(etcd: EtcdProcess, cluster_name: str,
                                                      tmp_path: Path) -> None:
    client = Etcd([etcd.endpoint])
    try:
        a = await bootstrap.ensure(tmp_path / "a", client, cluster_name, "127.0.0.1")
        b = await bootstrap.ensure(tmp_path / "b", client, cluster_name, "127.0.0.1")
        assert a.ca_pem == b.ca_pem
        assert a.cert_pem != b.cert_pem  # each replica its own serving key
        other = await bootstrap.ensure(tmp_path / "c", client, cluster_name + "x", "127.0.0.1")
        assert other.ca_pem != a.ca_pem  # another cluster, another CA
        await client.txn([], [ops.delete(bootstrap.ca_key_path(cluster_name + "x"))])
    finally:
        await client.close()


async def test_a_state_dir_from_another_cluster_is_refused(
        etcd: EtcdProcess, cluster_name: str, tmp_path: Path) -> None:
    """The CA in etcd wins; a state dir whose CA differs is not silently re-keyed. (A state
    dir whose etcd lost the CA puts its own back: its admin credential stays valid.)"""
    client = Etcd([etcd.endpoint])
    other = cluster_name + "y"
    try:
        await bootstrap.ensure(tmp_path / "mine", client, cluster_name, "127.0.0.1")
        await bootstrap.ensure(tmp_path / "theirs", client, other, "127.0.0.1")
        with pytest.raises(ValueError, match="belongs to another cluster"):
            await bootstrap.ensure(tmp_path / "mine", client, other, "127.0.0.1")
        await client.txn([], [ops.delete(bootstrap.ca_key_path(cluster_name))])
        again = await bootstrap.ensure(tmp_path / "mine", client, cluster_name, "127.0.0.1")
        assert again.ca_pem == (tmp_path / "mine" / TLS_DIR / "ca.crt").read_bytes()
    finally:
        await client.txn([], [ops.delete(bootstrap.ca_key_path(other))])
        await client.close()
