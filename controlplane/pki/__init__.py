"""The cluster's X.509 PKI: a CA, the replicas' serving certificates, admin and node
credentials (docs/security.md)."""
