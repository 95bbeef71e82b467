"""A remote cluster's connection: its etcd client, and the checks that refuse a connection
that would clash with the local cluster or another connected one."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from bulkhead.errors import FieldViolation
from controlplane.records.codec import ClusterInfoRecord, RecordError, RemoteClusterRecord
from controlplane.store.etcd import Etcd, TlsPem
from controlplane.store.keys import Keys


def remote_etcd(record: RemoteClusterRecord, timeout: float = 5.0) -> Etcd:
    """A client of the remote cluster's etcd (read-only use: the syncer never writes there)."""
    tls = TlsPem(record.etcd_cacert.encode() or None, record.etcd_cert.encode() or None,
                 record.etcd_key.encode() or None)
    return Etcd(record.etcd_endpoints, tls=tls, timeout=timeout)


async def read_info(etcd: Etcd, name: str) -> ClusterInfoRecord | None:
    """What the remote cluster `name` published about itself; None when its etcd holds no
    cluster of that name (no control plane of it ever started there)."""
    kv = await etcd.get(Keys(name).cluster_info)
    if kv is None:
        return None
    try:
        return ClusterInfoRecord.decode(kv.value)
    except RecordError:
        return None


def _overlap(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_network(a, strict=False).overlaps(ipaddress.ip_network(b,
                                                                                   strict=False))
    except ValueError:
        return False


def conflicts(local: ClusterInfoRecord, remote: ClusterInfoRecord,
              connected: Iterable[RemoteClusterRecord]) -> list[FieldViolation]:
    """Why `remote` cannot join the mesh of `local` and the clusters already connected (empty
    when it can); each names the cluster it clashes with."""
    found: list[FieldViolation] = []
    if remote.name == local.name:
        found.append(FieldViolation("name", f"{remote.name!r} is the local cluster's name"))
    if not 1 <= remote.id <= 255:
        found.append(FieldViolation("cluster_id", f"cluster {remote.name} has id {remote.id}; "
                                                  "a mesh needs ids 1-255"))
    if remote.id == local.id:
        found.append(FieldViolation("cluster_id", f"cluster {remote.name} has id {remote.id}, "
                                                  f"the local cluster {local.name}'s id"))
    if _overlap(remote.pod_pool, local.pod_pool):
        found.append(FieldViolation("pod_cidr", f"cluster {remote.name}'s pod pool "
                                                f"{remote.pod_pool} overlaps the local cluster "
                                                f"{local.name}'s {local.pod_pool}"))
    for other in connected:
        if other.name == remote.name:
            found.append(FieldViolation("name", f"cluster {remote.name} is already connected "
                                                "(disconnect it first)"))
            continue
        if other.id == remote.id:
            found.append(FieldViolation("cluster_id", f"cluster {remote.name} has id "
                                                      f"{remote.id}, the id of connected "
                                                      f"cluster {other.name}"))
        if _overlap(remote.pod_pool, other.pod_pool):
            found.append(FieldViolation("pod_cidr", f"cluster {remote.name}'s pod pool "
                                                    f"{remote.pod_pool} overlaps connected "
                                                    f"cluster {other.name}'s {other.pod_pool}"))
    return found
