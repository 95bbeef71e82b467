"""TLS for every gRPC channel and port the three programs open, in one place.

Mutual TLS is the default of every program (docs/security.md); `None` credentials mean
plaintext, which a program uses only when told so explicitly (`--insecure`, or for the CLI
`$BULKHEAD_INSECURE=1`). Clients: `aio_channel`/`channel` (mutual TLS when given `Credentials`).
Servers: `add_port` (mutual TLS when given PEM material). The file names under a state dir's
`tls/` are shared here so the CLI finds the admin credential where the control plane put it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

TLS_DIR = "tls"
CA_CERT = "ca.crt"
ADMIN_CERT = "admin.crt"
ADMIN_KEY = "admin.key"
TLS_MARKER = "controlplane.tls"
"""Written in the state dir next to the address file while the control plane serves TLS (an
`--insecure` start removes it): tells an operator which mode the local control plane is in."""
ADMIN_POINTER = "controlplane.admin"
"""Written in a state dir next to the address file by whoever wrote an address of a control
plane whose state dir is elsewhere (the lab): the directory holding that control plane's
ca.crt, admin.crt and admin.key. A control plane writing its own address removes it."""
INSECURE_ENV = "BULKHEAD_INSECURE"
"""Set to 1 (or true/yes): the CLI speaks plaintext, like `--insecure`."""
INSECURE_WARNING = ("WARNING: --insecure: plaintext gRPC, no client certificates and no "
                    "authorization -- anyone who can reach the port may do anything. For "
                    "development only; never run a cluster like this.")
"""What the control plane and the agent print (stderr and log) when started with `--insecure`."""
CONTROLPLANE_NAME = "bulkhead-controlplane"
"""CN of the control plane's certificate: the agent's TCP API accepts only it."""


@dataclass(frozen=True)
class Credentials:
    """A client's (or server's) certificate and key, and the CA it trusts, as files."""

    ca: Path
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        """The three files' bytes; ValueError naming the file that cannot be read."""
        out = []
        for path in (self.ca, self.cert, self.key):
            try:
                out.append(path.read_bytes())
            except OSError as exc:
                raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        return out[0], out[1], out[2]

    @staticmethod
    def admin_in(state_dir: Path) -> Credentials:
        d = state_dir / TLS_DIR
        return Credentials(d / CA_CERT, d / ADMIN_CERT, d / ADMIN_KEY)


@dataclass(frozen=True)
class Pem:
    """The same, in memory (a node certificate fresh from the join)."""

    ca: bytes
    cert: bytes
    key: bytes


Material = Credentials | Pem


def _pem(material: Material) -> tuple[bytes, bytes, bytes]:
    if isinstance(material, Pem):
        return material.ca, material.cert, material.key
    return material.read()


def channel_credentials(material: Material) -> grpc.ChannelCredentials:
    ca, cert, key = _pem(material)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                        certificate_chain=cert)


def _secure_options(address: str, options: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """A unix socket's authority is its path: check the server's certificate for `localhost`
    (one of its names) instead."""
    out = list(options)
    if address.startswith("unix:") and not any(k == "grpc.ssl_target_name_override"
                                               for k, _ in out):
        out.append(("grpc.ssl_target_name_override", "localhost"))
    return out


def aio_channel(address: str, material: Material | None,
                options: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    if material is None:
        return grpc.aio.insecure_channel(address, options=list(options))
    return grpc.aio.secure_channel(address, channel_credentials(material),
                                   options=_secure_options(address, options))


def channel(address: str, material: Material | None,
            options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    if material is None:
        return grpc.insecure_channel(address, options=list(options))
    return grpc.secure_channel(address, channel_credentials(material),
                               options=_secure_options(address, options))


def server_credentials(ca: bytes, cert: bytes, key: bytes, *,
                       require_client: bool = True) -> grpc.ServerCredentials:
    """Mutual TLS: a client must present a certificate from `ca` (gRPC refuses the handshake
    otherwise). Without `require_client`, server authentication only (the join port)."""
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca if require_client
                                       else None, require_client_auth=require_client)


def add_port(server: grpc.aio.Server, address: str,
             credentials: grpc.ServerCredentials | None) -> int:
    if credentials is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, credentials)


def insecure_from_env() -> bool:
    """Whether `$BULKHEAD_INSECURE` asks the CLI for plaintext."""
    return os.environ.get(INSECURE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def client_material(ca: Path | None, cert: Path | None, key: Path | None,
                    state_dir: Path | None, *, env_prefix: str = "BULKHEAD_TLS_",
                    insecure: bool = False) -> Credentials | None:
    """Where a client finds its credential: the three flags, else $BULKHEAD_TLS_CA/_CERT/_KEY,
    else the admin credential in `state_dir` (where the embedded control plane created it, or
    the directory `ADMIN_POINTER` there names).
    None (plaintext) only when `insecure`. ValueError, saying what to give, when half the flags
    are given, when `insecure` is combined with flags, or when no credential is found."""
    flags = {"ca": ca, "cert": cert, "key": key}
    if insecure:
        if any(flags.values()):
            raise ValueError("--insecure and --tls-ca/--tls-cert/--tls-key exclude each other")
        return None
    given = {n: v or _env(env_prefix + n.upper()) for n, v in flags.items()}
    if any(given.values()):
        missing = [f"--tls-{n}" for n, v in given.items() if v is None]
        if missing:
            raise ValueError(f"{', '.join(missing)} missing (give --tls-ca, --tls-cert and "
                             "--tls-key together)")
        return Credentials(given["ca"], given["cert"], given["key"])  # type: ignore[arg-type]
    if state_dir is not None:
        for admin in _admin_candidates(state_dir):
            if admin.cert.exists() and admin.key.exists() and admin.ca.exists():
                return admin
    where = f" (none in {state_dir / TLS_DIR})" if state_dir is not None else ""
    raise ValueError(f"no client credential{where}: give --tls-ca, --tls-cert and --tls-key "
                     f"(or ${env_prefix}CA/_CERT/_KEY), run where the control plane keeps its "
                     f"state dir, or --insecure (${INSECURE_ENV}=1) for a control plane "
                     "started with --insecure")


def _admin_candidates(state_dir: Path) -> list[Credentials]:
    pointer = state_dir / ADMIN_POINTER
    found = []
    if pointer.exists():
        d = Path(pointer.read_text().strip())
        found.append(Credentials(d / CA_CERT, d / ADMIN_CERT, d / ADMIN_KEY))
    return [*found, Credentials.admin_in(state_dir)]


def _env(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None
