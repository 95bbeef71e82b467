"""Policies in etcd, beside the pure engine in `controlplane.policy`: `PolicyStore` writes
them (parse, check, allocate CIDR identities, one transaction, wait) and `PolicyResolver`
follows the watch and keeps every identity's resolved policy current."""
