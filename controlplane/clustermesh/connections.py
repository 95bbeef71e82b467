"""`clustermesh connect` and `disconnect`: the remote connections stored in the local etcd
(`clustermesh/remotes/<name>`), checked against the remote's own cluster-info first."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from bulkhead.errors import FieldViolation, Invalid, NotFound, Unavailable
from controlplane.nodes.validate import DNS_LABEL
from controlplane.records.codec import ClusterInfoRecord, RemoteClusterRecord
from controlplane.store import etcd as ops
from controlplane.store.cache import ClusterCache
from controlplane.store.etcd import Etcd, EtcdPermissionDenied, EtcdUnavailable
from controlplane.store.keys import Keys

from .remote import conflicts, read_info, remote_etcd


@dataclass(frozen=True)
class ConnectRequest:
    name: str
    etcd_endpoints: Sequence[str]
    etcd_cacert: str = ""
    etcd_cert: str = ""
    etcd_key: str = ""


class Connections:
    def __init__(self, etcd: Etcd, keys: Keys, cache: ClusterCache,
                 local: ClusterInfoRecord) -> None:
        self.etcd = etcd
        self.keys = keys
        self.cache = cache
        self.local = local

    def connected(self) -> list[RemoteClusterRecord]:
        return sorted((RemoteClusterRecord.of_kv(kv)
                       for kv in self.cache.under(self.keys.mesh_remotes)),
                      key=lambda r: r.name)

    async def _connected_now(self) -> list[RemoteClusterRecord]:
        """The connections as etcd holds them now (not the cache: a connection made just
        before must count)."""
        kvs, _, _ = await self.etcd.range(self.keys.mesh_remotes)
        return [RemoteClusterRecord.of_kv(kv) for kv in kvs]

    async def publish_local(self) -> None:
        """Writes this cluster's cluster-info (what a connecting cluster checks against)."""
        value = self.local.encode()
        current = await self.etcd.get(self.keys.cluster_info)
        if current is None or current.value != value:
            await self.etcd.put(self.keys.cluster_info, value)

    async def connect(self, request: ConnectRequest) -> RemoteClusterRecord:
        bad = []
        if not DNS_LABEL.fullmatch(request.name):
            bad.append(FieldViolation("name", "a DNS label (lowercase letters, digits, '-')"))
        endpoints = [e.strip() for e in request.etcd_endpoints if e.strip()]
        if not endpoints:
            bad.append(FieldViolation("etcd_endpoints", "at least one etcd endpoint"))
        if bool(request.etcd_cert) != bool(request.etcd_key):
            bad.append(FieldViolation("etcd_cert", "etcd_cert and etcd_key go together"))
        if bad:
            raise Invalid(bad)
        candidate = RemoteClusterRecord(request.name, 0, "", tuple(endpoints),
                                        request.etcd_cacert, request.etcd_cert,
                                        request.etcd_key)
        try:
            remote = remote_etcd(candidate)
        except ValueError as exc:
            raise Invalid([FieldViolation("etcd_endpoints", str(exc))]) from None
        try:
            info = await read_info(remote, request.name)
        except EtcdPermissionDenied as exc:
            raise Invalid([FieldViolation(
                "etcd_cert", f"the etcd at {','.join(endpoints)} refuses this certificate "
                             f"read access to cluster {request.name} ({exc}): the remote "
                             "must grant its CN read access (docs/security.md)")]) from None
        except (EtcdUnavailable, grpc.RpcError) as exc:
            raise Unavailable(f"remote cluster {request.name}'s etcd "
                              f"({','.join(endpoints)}) is not reachable: {exc}") from None
        finally:
            await remote.close()
        if info is None:
            raise Invalid([FieldViolation(
                "name", f"the etcd at {','.join(endpoints)} holds no cluster {request.name!r} "
                        "(no control plane of that name uses it)")])
        found = conflicts(self.local, info, await self._connected_now())
        if found:
            raise Invalid(found, "connecting cluster " + request.name + " refused")
        record = RemoteClusterRecord(
            info.name, info.id, info.pod_pool, tuple(endpoints), request.etcd_cacert,
            request.etcd_cert, request.etcd_key,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        key = self.keys.mesh_remote(info.name)
        result = await self.etcd.txn(
            [ops.version_is(key, 0)],
            [ops.put(key, record.encode()), ops.delete(self.keys.mesh_mirror(info.name),
                                                       prefix=True),
             ops.delete(self.keys.mesh_status(info.name))])
        if not result.succeeded:
            raise Invalid([FieldViolation("name", f"cluster {info.name} is already connected "
                                                  "(disconnect it first)")])
        await self.cache.wait_for(result.revision)
        return record

    async def disconnect(self, name: str) -> None:
        """Removes the connection and everything mirrored of the remote in one transaction;
        its syncer stops (its guarded writes fail from now on)."""
        key = self.keys.mesh_remote(name)
        result = await self.etcd.txn(
            [ops.exists(key)],
            [ops.delete(key), ops.delete(self.keys.mesh_mirror(name), prefix=True),
             ops.delete(self.keys.mesh_status(name)), ops.delete(self.keys.mesh_leader(name))])
        if not result.succeeded:
            raise NotFound(f"cluster {name} is not connected")
        await self.cache.wait_for(result.revision)
