"""The control plane's parts, wired once: etcd, the cluster cache and the registries on it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version

import grpc

from bulkhead import log
from controlplane.clustermesh import access
from controlplane.clustermesh.connections import Connections
from controlplane.clustermesh.mesh import ClusterMesh
from controlplane.clustermesh.status import remote_identity_labels
from controlplane.config import Config
from controlplane.endpoints.registry import EndpointRegistry
from controlplane.identity.allocator import IdentityAllocator, IdentityLimits, IdentityRange
from controlplane.identity.collector import IdentityCollector
from controlplane.identity.index import IdentityIndex
from controlplane.nodes.ipam import ClusterPool
from controlplane.nodes.registry import NodeRegistry
from controlplane.observe.enrich import FlowEnricher
from controlplane.observe.relay import FlowRelay
from controlplane.pipeline import RevisionPipeline
from controlplane.pki import etcdtls
from controlplane.policystore.hoststage import HostPolicyStage
from controlplane.policystore.resolver import PolicyResolver
from controlplane.policystore.store import PolicyStore
from controlplane.records.codec import ClusterInfoRecord
from controlplane.replicas import ReplicaPresence
from controlplane.services.backends import ServiceIndex
from controlplane.servicestore.allocation import ServiceRange
from controlplane.servicestore.store import ServiceStore
from controlplane.store.cache import ClusterCache
from controlplane.store.embedded import EmbeddedEtcd
from controlplane.store.etcd import Etcd, EtcdUnavailable, TlsFiles
from controlplane.store.keys import Keys
from controlplane.subscription.fanout import Fanout, FanoutSettings
from controlplane.subscription.policy import EnginePolicySource

_log = log.get(__name__)


def _version() -> str:
    try:
        return version("bulkhead")
    except PackageNotFoundError:
        return "dev"


class ControlPlane:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.version = _version()
        self.keys = Keys(config.cluster_name)
        self.embedded: EmbeddedEtcd | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.stop_hooks: list[Callable[[], Awaitable[None]]] = []
        """Run first at stop (what the server added: the revocation watch of a TLS server)."""

    async def start(self) -> None:
        config = self.config
        endpoints = config.etcd_endpoints
        tls = TlsFiles(config.etcd_cacert, config.etcd_cert, config.etcd_key)
        if config.embedded:
            # Loopback only, and only for a certificate of its own CA (the state dir's, made
            # before etcd starts: the cluster CA lives in etcd itself).
            etcd_tls = etcdtls.ensure(config.state_dir)
            self.embedded = EmbeddedEtcd(config.state_dir / "etcd",
                                         compaction_retention=config.etcd_compaction_retention,
                                         tls=etcd_tls)
            await self.embedded.start()
            self.embedded.supervise()
            endpoints = [self.embedded.endpoint]
            tls = etcd_tls.client()
        self.etcd = Etcd(endpoints, tls=tls)
        if config.embedded:
            # etcd's auth on: this control plane is root, a remote's credential reads only.
            await access.secure(self.etcd, config.cluster_name, config.state_dir)
        self.cache = ClusterCache(self.etcd, self.keys.prefix)
        self.identity_index = IdentityIndex(self.keys)
        cluster_range = IdentityRange.for_cluster(config.cluster_id)
        id_range = cluster_range
        if config.identity_range:
            id_range = IdentityRange(*config.identity_range)
            if id_range.first not in cluster_range or id_range.last not in cluster_range:
                raise ValueError(f"--identity-range must lie inside {cluster_range.first}-"
                                 f"{cluster_range.last}")
        self.allocator = IdentityAllocator(
            self.etcd, self.keys, self.identity_index, id_range,
            limits=IdentityLimits(config.identity_max_labels, config.identity_max_label_bytes,
                                  config.identity_max_total_label_bytes))
        self.service_index = ServiceIndex(self.keys)
        self.policy_resolver = PolicyResolver(self.keys, self.identity_index,
                                            policy_map_max=config.policy_map_max,
                                            services=self.service_index,
                                            local_cluster=config.cluster_name
                                            if config.policy_default_local_cluster else "")
        self.policies = PolicyStore(self.etcd, self.keys, self.cache, self.policy_resolver,
                                    self.allocator)
        self.collector = IdentityCollector(self.etcd, self.keys, self.identity_index,
                                           config.identity_gc_grace)
        self.nodes = NodeRegistry(self.etcd, self.keys, self.cache,
                                  ClusterPool.parse(config.cluster_pool, config.node_mask),
                                  config.node_ttl)
        self.endpoints = EndpointRegistry(self.etcd, self.keys, self.cache, self.nodes,
                                          self.allocator)
        self.services = ServiceStore(self.etcd, self.keys, self.cache, self.service_index,
                                     ServiceRange(config.service_cidr))
        self.enricher = FlowEnricher(self.endpoints, self.identity_index,
                                     functools.partial(remote_identity_labels, self.keys,
                                                       self.cache))
        self.relay = FlowRelay(self.nodes, self.enricher)
        self.host_policies = HostPolicyStage(self.keys, self.policy_resolver)
        self.policies.hosts = self.host_policies
        self.subscriptions = Fanout(
            self.etcd, self.keys, self.cache, EnginePolicySource(self.policy_resolver),
            config.replica_id,
            FanoutSettings(config.subscription_history, config.subscription_queue_bytes,
                     config.bookmark_interval, config.subscription_status_interval,
                     config.node_ttl, max_linger=config.subscription_max_linger),
            services=self.service_index, host_policies=self.host_policies)
        self.cache.add_listener(RevisionPipeline(
            self.identity_index, self.policy_resolver, self.subscriptions.state,
            services=self.service_index, hosts=self.host_policies, views=[self.enricher]))
        await self._start_cache()
        await self.subscriptions.start()
        self._tasks.append(asyncio.create_task(self.collector.run(), name="identity-gc"))
        self.presence = ReplicaPresence(self.etcd, self.keys, self.cache, config.replica_id,
                                        self.version)
        self._tasks.append(asyncio.create_task(self.presence.run(), name="replica-presence"))
        self.connections = Connections(self.etcd, self.keys, self.cache, ClusterInfoRecord(
            config.cluster_name, config.cluster_id, config.cluster_pool))
        await self.connections.publish_local()
        self.mesh = ClusterMesh(self.etcd, self.keys, self.cache, config.replica_id,
                                cache_ttl=config.clustermesh_cache_ttl)
        self._tasks.append(asyncio.create_task(self.mesh.run(), name="clustermesh"))

    async def _start_cache(self, timeout: float = 30.0) -> None:
        """etcd may still be coming up (a restarted cluster): retry the first list."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                await self.cache.start()
                return
            except (EtcdUnavailable, grpc.RpcError) as exc:   # anything else is no wait
                if asyncio.get_running_loop().time() > deadline:
                    raise
                _log.warning("waiting for etcd", error=str(exc))
                await asyncio.sleep(0.5)

    async def stop(self) -> None:
        for hook in self.stop_hooks:
            await hook()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.presence.withdraw()
        await self.subscriptions.stop()
        await self.cache.stop()
        await self.etcd.close()
        if self.embedded is not None:
            await self.embedded.stop()
