"""Endpoint create/delete: identity reference, pod IP, endpoint record and ipcache entry are
written in one transaction bound to the node's lease, so nothing is ever half-written."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from bulkhead import log
from bulkhead.errors import (
    AlreadyExists,
    Conflict,
    Exhausted,
    FailedPrecondition,
    FieldViolation,
    Invalid,
    NotFound,
)
from controlplane.callers import UNCHECKED, Caller
from controlplane.identity.allocator import IdentityAllocator
from controlplane.identity.holders import endpoint_holder
from controlplane.identity.labels import CLUSTER_LABEL, label_key, with_cluster
from controlplane.nodes import ipam
from controlplane.nodes.registry import NodeRegistry
from controlplane.nodes.validate import check_name
from controlplane.records.codec import Endpoint, EndpointPort, IPCacheEntry
from controlplane.store import etcd as ops
from controlplane.store.cache import ClusterCache
from controlplane.store.etcd import Etcd
from controlplane.store.keys import Keys

from .ports import check_ports

_log = log.get(__name__)


def holder_of(namespace: str, name: str) -> str:
    return endpoint_holder(namespace, name)


def _not_for_endpoints(label: str, cluster: str) -> str | None:
    """Why `label` names an identity the control plane owns and no endpoint may claim."""
    if label_key(label) == CLUSTER_LABEL and label.partition("=")[2] != cluster:
        return (f"{label[:80]!r}: the {CLUSTER_LABEL} label names the endpoint's cluster, "
                f"here {cluster}")
    if label.startswith("reserved:"):
        return (f"{label[:80]!r}: reserved labels name the fixed identities (host, world, ...), "
                "which no endpoint can have")
    if label.startswith("cidr:"):
        return (f"{label[:80]!r}: cidr labels name the identities of policies' CIDR peers, "
                "which no endpoint can have")
    if label.startswith("fqdn:"):
        return (f"{label[:80]!r}: fqdn labels name the identities of policies' toFQDNs "
                "selectors, which no endpoint can have")
    return None


class EndpointRegistry:
    def __init__(self, etcd: Etcd, keys: Keys, cache: ClusterCache, nodes: NodeRegistry,
                 identities: IdentityAllocator) -> None:
        self.etcd = etcd
        self.keys = keys
        self.cache = cache
        self.nodes = nodes
        self.identities = identities

    def endpoints(self) -> list[Endpoint]:
        return [Endpoint.of_kv(kv) for kv in self.cache.under(self.keys.endpoints)]

    def ipcache(self) -> list[IPCacheEntry]:
        return [IPCacheEntry.of_kv(kv) for kv in self.cache.under(self.keys.ipcache)]

    @staticmethod
    def _check_ref(namespace: str, name: str) -> None:
        """Refuses a reference no endpoint can have (create checks the same) before it
        becomes an etcd key: a megabyte name is INVALID_ARGUMENT, not an etcd failure."""
        problems = check_name(namespace, "namespace") + check_name(name, "name", subdomain=True)
        if problems:
            raise Invalid(problems)

    async def get(self, namespace: str, name: str) -> Endpoint:
        self._check_ref(namespace or "default", name)
        kv = await self.etcd.get(self.keys.endpoint(namespace or "default", name))
        if kv is None:
            raise NotFound(f"endpoint {namespace or 'default'}/{name} does not exist")
        if (problem := self.cache.records.unreadable(kv.key, kv.value)) is not None:
            raise FailedPrecondition(f"{problem}; `endpoint delete` removes it")
        return Endpoint.decode(kv.value)

    async def create(self, node_name: str, namespace: str, name: str, labels: Sequence[str],
                     ip: str = "", ports: Sequence[EndpointPort] = ()) -> Endpoint:
        namespace = namespace or "default"
        problems = (check_name(node_name, "node", subdomain=True)
                    + check_name(namespace, "namespace") + check_name(name, "name",
                                                                      subdomain=True))
        served, port_problems = check_ports(ports)
        problems += port_problems
        label_set = None
        try:
            label_set = self.identities.canonical(with_cluster(labels, self.keys.cluster))
        except Invalid as exc:
            problems += exc.violations
        problems += [FieldViolation(f"labels[{i}]", why)
                     for i, label in enumerate(labels)
                     if (why := _not_for_endpoints(label, self.keys.cluster))]
        if ip:
            try:
                ipaddress.IPv4Address(ip)
            except ValueError:
                problems.append(FieldViolation("ip", f"must be an IPv4 address, got {ip[:80]!r}"))
        if problems or label_set is None:
            raise Invalid(problems)
        node = await self.nodes.get(node_name)
        if ip and not ipam.is_assignable(ip, node.pod_cidr):
            raise Invalid([FieldViolation("ip", f"{ip} is not an assignable address of node "
                                                f"{node_name}'s pod CIDR {node.pod_cidr}")])
        key = self.keys.endpoint(namespace, name)
        existing = await self.etcd.get(key)
        if existing is not None and (
                problem := self.cache.records.unreadable(key, existing.value)) is not None:
            raise FailedPrecondition(f"{problem}; `endpoint delete` removes it")
        if existing is not None:
            return self._same_or_conflict(Endpoint.decode(existing.value), node_name,
                                          labels, ip, served)
        holder = holder_of(namespace, name)
        for _ in range(16):
            identity = await self.identities.allocate(label_set, holder, lease=node.lease,
                                                      single=True)
            address = ip or self._free_ip(node.pod_cidr)
            if address is None:
                raise Exhausted(f"node {node_name}'s pod CIDR {node.pod_cidr} is full")
            endpoint = Endpoint(namespace, name, node_name, tuple(labels), address, identity.id,
                                served)
            entry = IPCacheEntry(f"{address}/32", identity.id, node_name, node.tunnel_ip,
                                 node.tunnel_port, self.keys.cluster)
            ipkey = self.keys.ipcache_entry(entry.prefix)
            result = await self.etcd.txn(
                [ops.version_is(key, 0), ops.version_is(ipkey, 0),
                 ops.exists(self.keys.identity(identity.id)),
                 ops.exists(self.identities.reference_key(identity.id, holder))],
                [ops.put(key, endpoint.encode(), node.lease),
                 ops.put(ipkey, entry.encode(), node.lease)],
                [ops.get(key), ops.get(ipkey)],
            )
            if result.succeeded:
                _log.info("endpoint created", endpoint=f"{namespace}/{name}", node=node_name,
                          ip=address, identity=identity.id)
                return endpoint
            raced = result.range_kvs(0)
            if raced:
                if Endpoint.decode(raced[0].value).identity != identity.id:
                    await self.etcd.txn([], [ops.delete(
                        self.identities.reference_key(identity.id, holder))])
                return self._same_or_conflict(Endpoint.decode(raced[0].value), node_name,
                                              labels, ip, served)
            if result.range_kvs(1) and ip:
                raise AlreadyExists(f"ip {ip} is already used by another endpoint")
            await self.cache.wait_for(result.revision, timeout=1.0)
        raise Conflict("endpoint creation kept conflicting; retry")

    async def delete(self, namespace: str, name: str, caller: Caller = UNCHECKED) -> Endpoint:
        """A node caller may delete only endpoints on its own node (checked against the record
        the deletion's transaction compares)."""
        namespace = namespace or "default"
        self._check_ref(namespace, name)
        key = self.keys.endpoint(namespace, name)
        for _ in range(16):
            kv = await self.etcd.get(key)
            if kv is None:
                raise NotFound(f"endpoint {namespace}/{name} does not exist")
            if caller.is_node and self.cache.records.unreadable(key, kv.value):
                caller.require_node("", f"on endpoint {namespace}/{name} (unreadable record)")
            if self.cache.records.unreadable(key, kv.value):
                # Its address and identity are not known: only the record goes (what it
                # held, if anything, carries the node's lease or is an orphan reference).
                endpoint = Endpoint(namespace, name, "", (), "", 0)
                deletes = [ops.delete(key)]
            else:
                endpoint = Endpoint.decode(kv.value)
                caller.require_node(endpoint.node, f"on endpoint {namespace}/{name}")
                deletes = [ops.delete(key),
                           ops.delete(self.keys.ipcache_entry(f"{endpoint.ip}/32")),
                           ops.delete(self.identities.reference_key(
                               endpoint.identity, holder_of(namespace, name)))]
            result = await self.etcd.txn([ops.mod_revision_is(key, kv.mod_revision)], deletes)
            if result.succeeded:
                _log.info("endpoint deleted", endpoint=f"{namespace}/{name}")
                return endpoint
        raise Conflict("endpoint deletion kept conflicting; retry")

    def _free_ip(self, pod_cidr: str) -> str | None:
        """The first address of the node's CIDR that has no /32 entry: one key lookup per
        address of the node, not a walk over every pod of the cluster on each create."""
        return ipam.free_ip(pod_cidr, lambda ip: self.cache.holds(
            self.keys.ipcache_entry(f"{ip}/32")))

    @staticmethod
    def _same_or_conflict(existing: Endpoint, node: str, labels: Sequence[str],
                          ip: str, ports: tuple[EndpointPort, ...]) -> Endpoint:
        if (existing.node == node and sorted(set(existing.labels)) == sorted(set(labels))
                and (not ip or ip == existing.ip) and existing.ports == ports):
            return existing
        raise AlreadyExists(f"endpoint {existing.namespace}/{existing.name} already exists "
                             f"with a different spec (node {existing.node}, ip {existing.ip})")
