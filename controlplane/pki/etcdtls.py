"""The embedded etcd's own TLS material, in the state dir: a CA of its own, etcd's serving
certificate and the one client certificate the control plane presents to it.

Why a CA of its own rather than the cluster CA: etcd with `--client-cert-auth` admits any
certificate its trusted CA signed, and the cluster CA signs every node's certificate, so a
node certificate would open the whole store. With a private CA that never leaves
STATE_DIR/tls/etcd (0700, files 0600), only this control plane gets in (and the remote
clusters' syncers it issues a `client` certificate for, which etcd's auth lets only read:
controlplane.clustermesh.access). It also settles the
chicken-and-egg: the cluster CA is kept in etcd, which must be reachable first; this one
needs nothing but the state dir.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from cryptography import x509

from bulkhead.tls import CONTROLPLANE_NAME, TLS_DIR
from controlplane.pki import certs
from controlplane.pki.files import private_dir, write_private
from controlplane.store.embedded import EmbeddedTls
from controlplane.store.etcd import TlsFiles

ETCD_DIR = "etcd"
CA_CERT, CA_KEY = "ca.crt", "ca.key"
SERVER_CERT, SERVER_KEY = "server.crt", "server.key"
CLIENT_CERT, CLIENT_KEY = "client.crt", "client.key"
SERVER_NAMES = ["127.0.0.1", "localhost"]
"""etcd listens on loopback only."""
RESERVED = (ETCD_DIR, "ca", "server", "client")
"""Names `client` may not issue: the files of the CA and of etcd's own certificates."""
RENEW_BEFORE = datetime.timedelta(days=30)
DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def _fresh(path: Path, ca: certs.CA) -> bool:
    """Whether the certificate at `path` exists, comes from `ca` and is not about to expire."""
    if not path.exists():
        return False
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return certs.issued_by(cert, ca.cert) and \
        certs.not_after(cert) - certs.now() >= RENEW_BEFORE


def _ca(state_dir: Path) -> tuple[Path, certs.CA]:
    """STATE_DIR/tls/etcd and the etcd CA kept there (created when missing)."""
    private_dir(state_dir / TLS_DIR)
    directory = private_dir(state_dir / TLS_DIR / ETCD_DIR)
    if (directory / CA_CERT).exists() and (directory / CA_KEY).exists():
        ca = certs.CA.load((directory / CA_CERT).read_bytes(), (directory / CA_KEY).read_bytes())
    else:
        ca = certs.CA.create("embedded-etcd")
        write_private(directory / CA_KEY, certs.key_pem(ca.key))
        write_private(directory / CA_CERT, certs.cert_pem(ca.cert))
    return directory, ca


def _leaf(directory: Path, ca: certs.CA, cert_name: str, key_name: str, cn: str,
          names: list[str]) -> None:
    if not _fresh(directory / cert_name, ca):
        key = certs.new_key()
        cert = ca.issue(key.public_key(), cn, certs.ADMIN, server_names=names)
        write_private(directory / key_name, certs.key_pem(key))
        write_private(directory / cert_name, certs.cert_pem(cert))


def ensure(state_dir: Path) -> EmbeddedTls:
    """Creates what is missing (or expiring) under STATE_DIR/tls/etcd, reuses the rest."""
    directory, ca = _ca(state_dir)
    # The server certificate is a client one too: etcd's peer port checks it both ways.
    _leaf(directory, ca, SERVER_CERT, SERVER_KEY, "bulkhead-embedded-etcd", SERVER_NAMES)
    _leaf(directory, ca, CLIENT_CERT, CLIENT_KEY, CONTROLPLANE_NAME, [])
    return EmbeddedTls(directory / CA_CERT, directory / SERVER_CERT, directory / SERVER_KEY,
                       directory / CLIENT_CERT, directory / CLIENT_KEY)


def client(state_dir: Path, name: str) -> TlsFiles:
    """A client certificate of this etcd's CA for someone else than this control plane (CN
    `name`, e.g. the clustermesh syncer of another cluster), kept as STATE_DIR/tls/etcd/
    NAME.crt and NAME.key and reused while fresh; with the CA, what `clustermesh connect`
    takes as --etcd-cacert/--etcd-cert/--etcd-key. It may only read what a remote syncer reads
    once etcd's auth knows its CN (`clustermesh.access.allow_remote`, which `secure` runs for
    every certificate issued here); hand it only to the clusters this one meshes with."""
    if not DNS_LABEL.fullmatch(name) or name in RESERVED:
        raise ValueError(f"etcd client name {name!r}: a DNS label other than ca, server, "
                         "client and etcd")
    directory, ca = _ca(state_dir)
    _leaf(directory, ca, f"{name}.crt", f"{name}.key", name, [])
    return TlsFiles(directory / CA_CERT, directory / f"{name}.crt", directory / f"{name}.key")


def common_name(cert: Path) -> str:
    """The CN of the certificate at `cert`: the etcd user it is (with etcd's auth on)."""
    return certs.subject_of(x509.load_pem_x509_certificate(cert.read_bytes())).name


def issued(state_dir: Path) -> list[str]:
    """The names `client` issued a certificate for in STATE_DIR/tls/etcd, sorted."""
    directory = state_dir / TLS_DIR / ETCD_DIR
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.crt")
                  if p.stem not in RESERVED and DNS_LABEL.fullmatch(p.stem))
