"""Where the PKI keeps its records in etcd: outside the cluster's record prefix
(/bulkhead/v1/CLUSTER/), so the cluster cache, the subscription and the views never see them."""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "/bulkhead/pki"


@dataclass(frozen=True)
class PkiKeys:
    cluster: str

    @property
    def prefix(self) -> str:
        return f"{ROOT}/{self.cluster}/"

    @property
    def ca(self) -> str:
        return f"{ROOT}/{self.cluster}/ca"

    @property
    def tokens(self) -> str:
        return f"{self.prefix}tokens/"

    def token(self, token_id: str) -> str:
        return f"{self.tokens}{token_id}"

    def issued(self, node: str) -> str:
        """Serials issued to `node`, one key each (what `RevokeNode` revokes)."""
        return f"{self.prefix}issued/{node}/"

    @property
    def revoked(self) -> str:
        """The deny-list: one key per revoked serial (hex), read by every replica."""
        return f"{self.prefix}revoked/"
