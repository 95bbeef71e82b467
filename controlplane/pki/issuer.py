"""Node certificates: the join (token + CSR), renewal, and revocation of a node's certificates.

A node certificate is short-lived (`--node-cert-ttl`, default 1 h; the agent renews at two
thirds of it) and names the node in its CN, with a server name (SAN) of the same name so the
agent's TCP API can present it to the flow relay. Every serial issued is recorded under the
node (with a lease that ends with the certificate), so revoking a node denies all of them.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from bulkhead.errors import FailedPrecondition, FieldViolation, Invalid
from controlplane.callers import Caller
from controlplane.nodes.validate import check_name
from controlplane.pki import certs
from controlplane.pki.keys import PkiKeys
from controlplane.pki.revocation import NODE_MARK
from controlplane.pki.tokens import TokenStore
from controlplane.store import etcd as ops
from controlplane.store.etcd import Etcd

DEFAULT_NODE_CERT_TTL = 3600
MIN_LEASE = 60


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    ca_pem: bytes
    not_after: datetime.datetime
    serial: int


def _csr(pem: bytes, field: str) -> tuple[x509.CertificateSigningRequest, str]:
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError as exc:
        raise Invalid([FieldViolation(field, f"not a PEM certificate signing request: {exc}")]
                      ) from None
    if not csr.is_signature_valid:
        raise Invalid([FieldViolation(field, "the CSR's signature does not verify")])
    if not isinstance(csr.public_key(), ec.EllipticCurvePublicKey):
        raise Invalid([FieldViolation(field, "the CSR's key must be an EC key")])
    cn = csr.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    name = str(cn[0].value) if cn else ""
    problems = check_name(name, f"{field}.subject.CN", subdomain=True)
    if problems:
        raise Invalid(problems)
    return csr, name


class NodeIssuer:
    def __init__(self, etcd: Etcd, keys: PkiKeys, signer: certs.CA | None, ca_pem: bytes,
                 tokens: TokenStore, ttl: int = DEFAULT_NODE_CERT_TTL) -> None:
        self.etcd = etcd
        self.keys = keys
        self.signer = signer
        self.ca_pem = ca_pem
        self.tokens = tokens
        self.ttl = ttl

    def _sign(self, csr: x509.CertificateSigningRequest, node: str) -> x509.Certificate:
        if self.signer is None:
            raise FailedPrecondition("this control plane has no CA key (--tls-ca without "
                                     "--tls-ca-key): it cannot sign node certificates")
        return self.signer.issue(csr.public_key(), node, certs.NODE, server_names=[node],
                                 lifetime=datetime.timedelta(seconds=self.ttl))

    async def _record(self, cert: x509.Certificate, node: str, extra_compare: list[object],
                      extra_ops: list[object]) -> bool:
        lease = await self.etcd.grant(max(MIN_LEASE, int(self.ttl + 2 * 300)))
        key = f"{self.keys.issued(node)}{cert.serial_number:x}"
        result = await self.etcd.txn(extra_compare, [*extra_ops, ops.put(
            key, str(int(certs.not_after(cert).timestamp())).encode(), lease)])
        if not result.succeeded:
            await self.etcd.revoke(lease)
        return result.succeeded

    def _issued(self, cert: x509.Certificate) -> Issued:
        return Issued(certs.cert_pem(cert), self.ca_pem, certs.not_after(cert),
                      cert.serial_number)

    async def join(self, token: str, csr_pem: bytes) -> Issued:
        csr, node = _csr(csr_pem, "csr")
        _, kv = await self.tokens.check(token, node)
        cert = self._sign(csr, node)
        used = await self._record(cert, node, [ops.mod_revision_is(kv.key, kv.mod_revision)],
                                  [ops.delete(kv.key)])
        if not used:  # another join took the token first
            await self.tokens.check(token, node)  # raises "unknown, used or revoked"
        return self._issued(cert)

    async def renew(self, caller: Caller, csr_pem: bytes) -> Issued:
        csr, node = _csr(csr_pem, "csr")
        caller.require_node(node, "(the CSR's CN)")
        cert = self._sign(csr, node)
        await self._record(cert, node, [], [])
        return self._issued(cert)

    async def revoke_node(self, node: str) -> list[int]:
        """Puts every serial issued to `node` on the deny-list (each entry leased until the
        certificate would have expired anyway)."""
        problems = check_name(node, "node", subdomain=True)
        if problems:
            raise Invalid(problems)
        kvs, _, _ = await self.etcd.range(self.keys.issued(node))
        serials = []
        now = time.time()
        for kv in kvs:
            serial_hex = kv.key.rsplit("/", 1)[1]
            remaining = int(kv.value) - int(now) + 300
            if remaining <= 0:
                continue
            lease = await self.etcd.grant(max(MIN_LEASE, remaining))
            await self.etcd.put(f"{self.keys.revoked}{serial_hex}", node.encode(), lease)
            serials.append(int(serial_hex, 16))
        # Also every certificate of the node issued until now (a renewal racing with this
        # listing included); a later join with a new token is accepted again.
        lease = await self.etcd.grant(max(MIN_LEASE, self.ttl + 2 * 300))
        await self.etcd.put(f"{self.keys.revoked}{NODE_MARK}{node}", str(now).encode(), lease)
        return serials
