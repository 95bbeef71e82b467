"""X.509 work, with the `cryptography` package: keys, the cluster CA, issued certificates.

A certificate names its holder in the subject's CN and its role in the subject's O
(`bulkhead:admin`, `bulkhead:node`, `bulkhead:reader`; like Kubernetes' `system:nodes`): the
gRPC layer reads both from the peer certificate (`controlplane.api.caller`).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROLE_PREFIX = "bulkhead:"
ADMIN = "admin"
NODE = "node"
READER = "reader"
ROLES = (ADMIN, NODE, READER)
CA_YEARS = 10
LEAF_DAYS = 365
CLOCK_SKEW = datetime.timedelta(minutes=5)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def new_key() -> ec.EllipticCurvePrivateKey:
    """P-256: small, fast handshakes, supported by every TLS stack gRPC uses."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("only EC private keys are supported")
    return key


@dataclass(frozen=True)
class CA:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @staticmethod
    def create(cluster: str) -> CA:
        key = new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bulkhead-ca-{cluster}")])
        start = now() - CLOCK_SKEW
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start)
                .not_valid_after(start + datetime.timedelta(days=365 * CA_YEARS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False),
                    critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        return CA(cert, key)

    @staticmethod
    def load(cert_pem_bytes: bytes, key_pem_bytes: bytes) -> CA:
        return CA(x509.load_pem_x509_certificate(cert_pem_bytes), load_key(key_pem_bytes))

    def issue(self, public_key: ec.EllipticCurvePublicKey | object, common_name: str, role: str,
              *, server_names: list[str] = (), client: bool = True,  # type: ignore[assignment]
              lifetime: datetime.timedelta = datetime.timedelta(days=LEAF_DAYS)
              ) -> x509.Certificate:
        """A leaf certificate for `public_key`: CN `common_name`, O `bulkhead:<role>`; a
        server certificate when `server_names` (DNS names or IP addresses) are given."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        subject = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ROLE_PREFIX + role),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        start = now() - CLOCK_SKEW
        usages = ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else []) + \
                 ([ExtendedKeyUsageOID.SERVER_AUTH] if server_names else [])
        builder = (x509.CertificateBuilder().subject_name(subject)
                   .issuer_name(self.cert.subject)
                   .public_key(public_key)  # type: ignore[arg-type]
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(now() + lifetime)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self.key.public_key()), critical=False))
        if server_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in server_names]),
                critical=False)
        return builder.sign(self.key, hashes.SHA256())


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@dataclass(frozen=True)
class Subject:
    """Who a certificate speaks for."""

    name: str
    role: str
    serial: int
    not_after: datetime.datetime
    issued: float
    """Unix time the certificate was made (its notBefore is backdated by CLOCK_SKEW)."""


def subject_of(cert: x509.Certificate) -> Subject:
    """CN and role (O = `bulkhead:<role>`) of `cert`; role "" when it carries none."""
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    orgs = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    role = next((o.removeprefix(ROLE_PREFIX) for o in orgs if o.startswith(ROLE_PREFIX)), "")
    return Subject(str(cn[0].value) if cn else "", role if role in ROLES else "",
                   cert.serial_number, not_after(cert),
                   (cert.not_valid_before.replace(tzinfo=datetime.UTC) + CLOCK_SKEW).timestamp())


def not_after(cert: x509.Certificate) -> datetime.datetime:
    """Aware UTC (cryptography 38, Debian 12's, has only the naive `not_valid_after`)."""
    return cert.not_valid_after.replace(tzinfo=datetime.UTC)


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether `ca`'s key signed `cert` (cryptography 38 lacks verify_directly_issued_by)."""
    if cert.issuer != ca.subject or cert.signature_hash_algorithm is None:
        return False
    public = ca.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        return False
    try:
        public.verify(cert.signature, cert.tbs_certificate_bytes,
                      ec.ECDSA(cert.signature_hash_algorithm))
    except InvalidSignature:
        return False
    return True


def csr_pem(key: ec.EllipticCurvePrivateKey, common_name: str) -> bytes:
    """A certificate signing request for `key` (the agent's join)."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)
