"""The control plane's TLS material at start (the default; none with `--insecure`): one cluster
CA shared by every replica through etcd, this replica's serving certificate and the admin
credential in its state dir.

Why the CA lives in etcd (docs/security.md): every replica must verify the same client
certificates and sign node certificates any other replica accepts, and whoever can write etcd
already holds the whole cluster (policies, nodes, identities), so the CA key there gives such a
writer nothing new; the first replica creates it with a create-if-absent transaction, the
others (and restarts) read it. Operators who keep the CA elsewhere pass their own files
(`--tls-ca/--tls-cert/--tls-key`, and `--tls-ca-key` to sign node certificates at join).
"""

from __future__ import annotations

import datetime
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from bulkhead.tls import (
    ADMIN_CERT,
    ADMIN_KEY,
    CA_CERT,
    CONTROLPLANE_NAME,
    TLS_DIR,
    Credentials,
)
from controlplane.config import Config
from controlplane.pki import certs
from controlplane.pki.files import private_dir, write_private
from controlplane.pki.keys import PkiKeys
from controlplane.store import etcd as ops
from controlplane.store.etcd import Etcd

SERVER_CERT = "server.crt"
SERVER_KEY = "server.key"
CA_KEY = "ca.key"
RENEW_BEFORE = datetime.timedelta(days=30)


def ca_key_path(cluster: str) -> str:
    """Outside the cluster's record prefix: the cache and the subscription never see it."""
    return PkiKeys(cluster).ca


@dataclass(frozen=True)
class ServerTls:
    """What the gRPC server needs: its chain and key, the CA clients must come from, and the
    CA's key when this replica may sign (node certificates at join)."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    signer: certs.CA | None


def server_names(listen_host: str) -> list[str]:
    names = [listen_host, "127.0.0.1", "localhost", socket.gethostname()]
    names = [n.strip("[]") for n in names if n and n not in ("0.0.0.0", "::", "[::]")]
    return list(dict.fromkeys(names))


async def shared_ca(etcd: Etcd, cluster: str, local: certs.CA | None) -> certs.CA:
    """The cluster's CA from etcd, stored there first (from `local`, else new) when absent."""
    key = ca_key_path(cluster)
    found = await etcd.get(key)
    if found is None:
        ca = local or certs.CA.create(cluster)
        value = certs.cert_pem(ca.cert) + certs.key_pem(ca.key)
        result = await etcd.txn([ops.version_is(key, 0)], [ops.put(key, value)], [ops.get(key)])
        if result.succeeded:
            return ca
        found = result.range_kvs(0)[0]
    return certs.CA.load(found.value, found.value)


def _valid(path: Path, ca: certs.CA, names: list[str] = ()) -> bool:  # type: ignore[assignment]
    """Whether the certificate at `path` exists, comes from `ca`, is not about to expire and
    covers `names`."""
    if not path.exists():
        return False
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    if not certs.issued_by(cert, ca.cert) or certs.not_after(cert) - certs.now() < RENEW_BEFORE:
        return False
    if names:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        held = {str(v) for v in san.get_values_for_type(x509.DNSName)} | \
               {str(v) for v in san.get_values_for_type(x509.IPAddress)}
        return set(names) <= held
    return True


def _issue(directory: Path, cert_name: str, key_name: str, ca: certs.CA, cn: str, role: str,
           names: list[str] = ()) -> None:  # type: ignore[assignment]
    key = certs.new_key()
    cert = ca.issue(key.public_key(), cn, role, server_names=list(names))
    write_private(directory / key_name, certs.key_pem(key))
    write_private(directory / cert_name, certs.cert_pem(cert))


async def ensure(state_dir: Path, etcd: Etcd, cluster: str, listen_host: str) -> ServerTls:
    """Creates what is missing (or no longer fits) under `state_dir`/tls, reuses the rest."""
    directory = private_dir(state_dir / TLS_DIR)
    local = None
    if (directory / CA_CERT).exists() and (directory / CA_KEY).exists():
        local = certs.CA.load((directory / CA_CERT).read_bytes(),
                              (directory / CA_KEY).read_bytes())
    ca = await shared_ca(etcd, cluster, local)
    if local is not None and local.cert != ca.cert:
        raise ValueError(f"{directory / CA_CERT} is not cluster {cluster!r}'s CA (the one in "
                         "etcd): this state dir belongs to another cluster")
    if local is None:
        write_private(directory / CA_KEY, certs.key_pem(ca.key))
        write_private(directory / CA_CERT, certs.cert_pem(ca.cert))
    names = server_names(listen_host)
    if not _valid(directory / SERVER_CERT, ca, names):
        _issue(directory, SERVER_CERT, SERVER_KEY, ca, CONTROLPLANE_NAME, certs.ADMIN,
               names)
    if not _valid(directory / ADMIN_CERT, ca):
        _issue(directory, ADMIN_CERT, ADMIN_KEY, ca, "admin", certs.ADMIN)
    return ServerTls(certs.cert_pem(ca.cert), (directory / SERVER_CERT).read_bytes(),
                     (directory / SERVER_KEY).read_bytes(), ca)


def from_files(files: Credentials, ca_key: Path | None) -> ServerTls:
    """The operator's own CA and serving certificate (`--tls-ca/--tls-cert/--tls-key`)."""
    ca_pem, cert_pem, key_pem = files.read()
    signer = certs.CA.load(ca_pem, ca_key.read_bytes()) if ca_key is not None else None
    return ServerTls(ca_pem, cert_pem, key_pem, signer)


async def for_config(config: Config, etcd: Etcd) -> ServerTls | None:
    """The TLS material `config` asks for; None only with `--insecure` (plaintext)."""
    if not config.tls:
        return None
    if config.tls_ca and config.tls_cert and config.tls_key:
        return from_files(Credentials(config.tls_ca, config.tls_cert, config.tls_key),
                          config.tls_ca_key)
    host = config.listen.rsplit(":", 1)[0]
    return await ensure(config.state_dir, etcd, config.cluster_name, host)
