"""Plain objects -> protobuf messages."""

from __future__ import annotations

from bulkhead.v1 import types_pb2
from controlplane.endpoints.model import Endpoint, IPCacheEntry
from controlplane.identity.allocator import AllocatedIdentity
from controlplane.nodes.registry import Node


def identity(ident: AllocatedIdentity) -> types_pb2.Identity:
    return types_pb2.Identity(id=ident.id, labels=list(ident.labels),
                              references=ident.references)


def node(n: Node) -> types_pb2.Node:
    return types_pb2.Node(name=n.name, node_id=n.node_id, underlay_ip=n.underlay_ip,
                          pod_cidr=n.pod_cidr, cluster=n.cluster, agent_address=n.agent_address,
                          tunnel=types_pb2.TunnelEndpoint(ip=n.tunnel_ip, port=n.tunnel_port))


def endpoint(e: Endpoint) -> types_pb2.Endpoint:
    return types_pb2.Endpoint(namespace=e.namespace, name=e.name, node=e.node,
                              labels=list(e.labels), ip=e.ip, identity=e.identity)


def ipcache(e: IPCacheEntry) -> types_pb2.IPCacheEntry:
    return types_pb2.IPCacheEntry(prefix=e.prefix, identity=e.identity, node=e.node,
                                  cluster=e.cluster,
                                  tunnel=types_pb2.TunnelEndpoint(ip=e.tunnel_ip,
                                                                  port=e.tunnel_port))
