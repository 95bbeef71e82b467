"""Records -> `bulkhead.v1` messages: the one place a stored record becomes what the admin API
answers and what the subscription sends to agents, so both show the same fields."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from bulkhead.v1 import admin_pb2, policy_pb2, subscription_pb2, types_pb2
from controlplane.identity.allocator import AllocatedIdentity
from controlplane.policy import to_yaml

from .codec import (
    BadRecord,
    Endpoint,
    EndpointPort,
    IdentityRecord,
    IPCacheEntry,
    Node,
    NodeStatus,
    ServicePortRecord,
    ServiceRecord,
)

if TYPE_CHECKING:
    from controlplane.policy.store import PolicyRecord

Shared = Node | IPCacheEntry | IdentityRecord
"""The kinds every agent receives."""


def identity(ident: AllocatedIdentity | IdentityRecord) -> types_pb2.Identity:
    """An identity; the references are the allocator's count (a stored record has none)."""
    references = ident.references if isinstance(ident, AllocatedIdentity) else 0
    return types_pb2.Identity(id=ident.id, labels=list(ident.labels), references=references)


def node(n: Node) -> types_pb2.Node:
    return types_pb2.Node(name=n.name, node_id=n.node_id, underlay_ip=n.underlay_ip,
                          pod_cidr=n.pod_cidr, cluster=n.cluster, agent_address=n.agent_address,
                          labels=list(n.labels),
                          tunnel=types_pb2.TunnelEndpoint(ip=n.tunnel_ip, port=n.tunnel_port))


def endpoint(e: Endpoint) -> types_pb2.Endpoint:
    return types_pb2.Endpoint(namespace=e.namespace, name=e.name, node=e.node,
                              labels=list(e.labels), ip=e.ip, identity=e.identity,
                              ports=[types_pb2.EndpointPort(name=p.name, port=p.port,
                                                            protocol=p.protocol)
                                     for p in e.ports])


def endpoint_ports(ports: Iterable[types_pb2.EndpointPort]) -> tuple[EndpointPort, ...]:
    """The ports of a request as given (checked by the registry)."""
    return tuple(EndpointPort(p.name, p.port, p.protocol) for p in ports)


def ipcache(e: IPCacheEntry) -> types_pb2.IPCacheEntry:
    return types_pb2.IPCacheEntry(prefix=e.prefix, identity=e.identity, node=e.node,
                                  cluster=e.cluster,
                                  tunnel=types_pb2.TunnelEndpoint(ip=e.tunnel_ip,
                                                                  port=e.tunnel_port))


def put_change(record: Shared) -> subscription_pb2.Change:
    """The subscription change that puts `record` on every agent."""
    if isinstance(record, Node):
        return subscription_pb2.Change(node=node(record))
    if isinstance(record, IPCacheEntry):
        return subscription_pb2.Change(ipcache=ipcache(record))
    return subscription_pb2.Change(identity=identity(record))


def removed_change(record: Shared) -> subscription_pb2.Change:
    """The subscription change that removes what `record` (the previous value) held."""
    if isinstance(record, Node):
        return subscription_pb2.Change(node_removed=record.name)
    if isinstance(record, IPCacheEntry):
        return subscription_pb2.Change(ipcache_removed=record.prefix)
    return subscription_pb2.Change(identity_removed=record.id)


def node_subscription(status: NodeStatus) -> subscription_pb2.NodeSubscription:
    return subscription_pb2.NodeSubscription(
        name=status.name, replica=status.replica, connected_since=status.connected_since,
        acked_revision=status.acked_revision, lag_revisions=status.lag_revisions,
        resumes=status.resumes, snapshots=status.snapshots, connected=status.connected)


def policy_info(record: PolicyRecord, *, with_yaml: bool = False) -> policy_pb2.PolicyInfo:
    policy = record.policy
    return policy_pb2.PolicyInfo(kind=policy.kind, namespace=policy.key.namespace,
                                 name=policy.key.name, revision=record.revision,
                                 created_revision=record.created_revision,
                                 rules=len(policy.rules),
                                 yaml=to_yaml(policy) if with_yaml else "")


def bad_record(bad: BadRecord) -> admin_pb2.BadRecord:
    return admin_pb2.BadRecord(key=bad.key, kind=bad.kind, reason=bad.reason,
                               mod_revision=bad.mod_revision)


def service(record: ServiceRecord, endpoints: Sequence[Endpoint]) -> types_pb2.Service:
    """A service with its backends: for each port, one per selected endpoint, in endpoint
    order. A named targetPort resolves per endpoint to its container port of that name and
    protocol; an endpoint without one is no backend of that port (as in Kubernetes)."""
    backends = [types_pb2.ServiceBackend(ip=e.ip, port=target, protocol=p.protocol,
                                         port_name=p.name, node=e.node,
                                         endpoint=f"{e.namespace}/{e.name}")
                for p in record.ports for e in endpoints
                if (target := target_port(p, e))]
    return types_pb2.Service(
        namespace=record.namespace, name=record.name, cluster_ip=record.cluster_ip,
        headless=record.headless, id=record.id, client_ip_affinity=record.client_ip_affinity,
        selector=dict(pair.partition("=")[::2] for pair in record.selector),
        ports=[types_pb2.ServicePort(name=p.name, port=p.port, protocol=p.protocol,
                                     target_port=p.target_port,
                                     target_port_name=p.target_port_name)
               for p in record.ports],
        backends=backends)


def target_port(port: ServicePortRecord, endpoint: Endpoint) -> int:
    """Where `endpoint` serves the service port: its number, or the endpoint's container port
    the targetPort names (0: the endpoint does not serve it)."""
    if port.target_port:
        return port.target_port
    return endpoint.port_named(port.target_port_name, port.protocol)
