"""The agent's node certificate (the default; none with `--insecure`): kept in `--tls-dir`,
obtained by a join with a bootstrap token when missing or expired, renewed at two thirds of
its life.

The join goes to the control plane's join port, whose certificate is checked against the
cluster CA (`--tls-ca`); the token travels only in that request and is never logged. A
renewal is a call on the mutual-TLS port with the current certificate; the stream already
open keeps its TLS session (a certificate is checked at the handshake only), later
connections use the new one (`SubscriptionClient.use_credentials`).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bulkhead import log, tls
from bulkhead.v1 import security_pb2, security_pb2_grpc

_log = log.get(__name__)
CERT = "node.crt"
KEY = "node.key"
CA = "ca.crt"
RENEW_AT = 2 / 3


class CredentialError(ValueError):
    """No node certificate and no way to get one (no token, no CA, a refused join): the agent
    says so in one line and exits."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _not_after(pem: bytes) -> datetime.datetime:
    cert = x509.load_pem_x509_certificate(pem)
    return cert.not_valid_after.replace(tzinfo=datetime.UTC)


def _write(path: Path, data: bytes) -> None:
    """0600 from the first byte, replaced at once (as controlplane.pki.files, which the agent
    does not import)."""
    import os

    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def csr(key: ec.EllipticCurvePrivateKey, node: str) -> bytes:
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)]))
               .sign(key, hashes.SHA256()))
    return request.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class NodeCredentials:
    def __init__(self, node: str, directory: Path, ca: Path | None, join_server: str,
                 token: str | None) -> None:
        self.node = node
        self.directory = directory
        self.ca_file = ca
        self.join_server = join_server
        self._token = token
        self.current: tls.Pem | None = None
        self._obtained = _now()
        self.renewals = 0

    def _load(self) -> tls.Pem | None:
        d = self.directory
        if not all((d / f).exists() for f in (CERT, KEY, CA)):
            return None
        cert = (d / CERT).read_bytes()
        if _not_after(cert) <= _now() + datetime.timedelta(seconds=5):
            return None
        return tls.Pem((d / CA).read_bytes(), cert, (d / KEY).read_bytes())

    def _store(self, key: ec.EllipticCurvePrivateKey, answer: security_pb2.NodeCredential
               ) -> tls.Pem:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(self.directory / KEY, _key_pem(key))
        _write(self.directory / CA, answer.ca)
        _write(self.directory / CERT, answer.certificate)
        self.current = tls.Pem(answer.ca, answer.certificate, _key_pem(key))
        self._obtained = _now()
        return self.current

    async def obtain(self) -> tls.Pem:
        """The stored certificate while valid, else one from a join."""
        loaded = self._load()
        if loaded is not None:
            self.current = loaded
            self._obtained = _now()
            return loaded
        if not self._token:
            raise CredentialError(f"no valid node certificate in {self.directory} and no "
                                  "--join-token/--join-token-file to get one (or --insecure "
                                  "for a control plane started with --insecure)")
        if self.ca_file is None:
            raise CredentialError("--join-token needs --tls-ca (the cluster CA, to check the "
                                  "control plane's join port)")
        key = ec.generate_private_key(ec.SECP256R1())
        try:
            ca_pem = self.ca_file.read_bytes()
        except OSError as exc:
            raise CredentialError(f"--tls-ca {self.ca_file}: {exc.strerror}") from None
        credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem)
        try:
            async with grpc.aio.secure_channel(self.join_server, credentials) as channel:
                answer = await security_pb2_grpc.SecurityServiceStub(channel).Join(
                    security_pb2.JoinRequest(token=self._token, csr=csr(key, self.node)),
                    timeout=15)
        except grpc.aio.AioRpcError as exc:
            raise CredentialError(f"join refused by {self.join_server}: {exc.code().name}: "
                                  f"{exc.details()}") from None
        self._token = None  # used: never kept, never logged
        _log.info("node joined", serial=answer.serial, not_after=answer.not_after_unix)
        return self._store(key, answer)

    def renew_in(self) -> float:
        """Seconds until the renewal is due: two thirds of the time the certificate had left
        when it was obtained (its notBefore is backdated for clock skew, so not from it)."""
        assert self.current is not None
        left = (_not_after(self.current.cert) - self._obtained).total_seconds()
        due = self._obtained + datetime.timedelta(seconds=left * RENEW_AT)
        return max(0.0, (due - _now()).total_seconds())

    async def renew(self, addresses: Sequence[str]) -> tls.Pem:
        assert self.current is not None
        key = ec.generate_private_key(ec.SECP256R1())
        last: Exception | None = None
        for address in addresses:
            try:
                async with tls.aio_channel(address, self.current) as channel:
                    answer = await security_pb2_grpc.SecurityServiceStub(channel).Renew(
                        security_pb2.RenewRequest(csr=csr(key, self.node)), timeout=15)
            except grpc.aio.AioRpcError as exc:
                last = exc
                continue
            self.renewals += 1
            _log.info("node certificate renewed", serial=answer.serial,
                      not_after=answer.not_after_unix)
            return self._store(key, answer)
        raise RuntimeError(f"renewal failed on every control plane: {last}")

    async def keep_renewed(self, addresses: Sequence[str],
                           renewed: Callable[[tls.Pem], None]) -> None:
        """Runs until cancelled; a failed renewal is retried while the certificate lasts."""
        while True:
            await asyncio.sleep(self.renew_in())
            try:
                renewed(await self.renew(addresses))
            except Exception as exc:
                _log.warning("node certificate renewal failed; retrying", error=str(exc))
                await asyncio.sleep(2.0)


def join_server(addresses: Sequence[str], explicit: str | None) -> str:
    """`--join-server`, else the first control plane's host at its port + 1 (the control
    plane's default join port)."""
    if explicit:
        return explicit
    host, _, port = addresses[0].rpartition(":")
    return f"{host}:{int(port) + 1}"


def read_token(value: str | None, path: Path | None) -> str | None:
    if path is not None:
        return path.read_text().strip()
    return value
