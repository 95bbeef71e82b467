"""What a remote cluster's credential for this cluster's etcd may do: read what a syncer
reads (the cluster-info key and the mirrored key range), nothing else, enforced by etcd's
auth (controlplane.store.etcdauth). Not readable with it: this cluster's own clustermesh
records (the credentials it holds for other clusters' etcds), its subscription records and
anything outside the cluster prefix (the PKI); not writable: anything."""

from __future__ import annotations

from pathlib import Path

from controlplane.pki import etcdtls
from controlplane.store import etcdauth
from controlplane.store.etcd import Etcd, prefix_end
from controlplane.store.keys import Keys

from .syncer import WATCHED


def reader_role(cluster: str) -> str:
    """The etcd role every remote credential of `cluster` holds."""
    return f"clustermesh-reader-{cluster}"


def shared_ranges(cluster: str) -> list[tuple[bytes, bytes]]:
    """The key ranges other clusters' syncers read of `cluster`: its cluster-info key (at
    `connect`) and the range their watch covers."""
    keys = Keys(cluster)
    return [(keys.cluster_info.encode(), b""),
            ((keys.prefix + WATCHED[0]).encode(), prefix_end(keys.prefix + WATCHED[1]))]


async def allow_remote(etcd: Etcd, cluster: str, user: str) -> None:
    """User `user` (the CN of a remote's certificate) may read `cluster`'s shared ranges."""
    await etcdauth.grant_read(etcd, user, reader_role(cluster), shared_ranges(cluster))


async def secure(etcd: Etcd, cluster: str, state_dir: Path) -> None:
    """etcd's auth on for an etcd whose TLS material lives in `state_dir` (the embedded one,
    or one a lab runs with it): `etcd` must be opened with the control plane's certificate
    there (its CN gets the root role), and every remote certificate issued there
    (`etcdtls.client`) may read `cluster`'s shared ranges. Idempotent: every start runs it."""
    tls = etcdtls.ensure(state_dir)
    await etcdauth.enable(etcd, etcdtls.common_name(tls.client_cert))
    for name in etcdtls.issued(state_dir):
        await allow_remote(etcd, cluster, name)
