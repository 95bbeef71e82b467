"""The parts a TLS server (the default) adds to a control plane, wired once: join tokens, the node
certificate issuer and the revocation deny-list (started with the server, stopped with the
control plane)."""

from __future__ import annotations

from dataclasses import dataclass

from bulkhead import tls
from controlplane.app import ControlPlane
from controlplane.pki.bootstrap import ServerTls
from controlplane.pki.issuer import NodeIssuer
from controlplane.pki.keys import PkiKeys
from controlplane.pki.revocation import Revocations
from controlplane.pki.tokens import TokenStore


@dataclass
class Security:
    tokens: TokenStore
    issuer: NodeIssuer
    revocations: Revocations

    @staticmethod
    async def start(cp: ControlPlane, server: ServerTls) -> Security:
        keys = PkiKeys(cp.config.cluster_name)
        tokens = TokenStore(cp.etcd, keys)
        issuer = NodeIssuer(cp.etcd, keys, server.signer, server.ca_pem, tokens,
                            cp.config.node_cert_ttl)
        revocations = Revocations(cp.etcd, keys)
        await revocations.start()
        cp.stop_hooks.append(revocations.stop)
        cp.relay.credentials = tls.Pem(server.ca_pem, server.cert_pem, server.key_pem)
        return Security(tokens, issuer, revocations)
