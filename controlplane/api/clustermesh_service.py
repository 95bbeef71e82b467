"""Clustermesh over gRPC; thin over controlplane.clustermesh (connections, status)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import grpc

from bulkhead.v1 import clustermesh_pb2 as pb
from bulkhead.v1 import clustermesh_pb2_grpc
from controlplane.clustermesh.connections import Connections, ConnectRequest
from controlplane.clustermesh.status import RemoteView, nodes_with_remotes, remote_views
from controlplane.records.codec import NodeStatus, RemoteClusterRecord
from controlplane.store.cache import ClusterCache
from controlplane.store.keys import Keys

from .errors import rpc


def remote_message(record: RemoteClusterRecord) -> pb.RemoteCluster:
    return pb.RemoteCluster(name=record.name, cluster_id=record.id, pod_pool=record.pod_pool,
                            etcd_endpoints=list(record.etcd_endpoints),
                            connected=record.connected)


def status_message(view: RemoteView, nodes_synced: int = 0) -> pb.RemoteClusterStatus:
    s = view.status
    return pb.RemoteClusterStatus(
        nodes_synced=nodes_synced,
        cluster=remote_message(view.remote), ready=view.ready, last_sync=s.last_sync,
        revision=s.revision, nodes=view.nodes, endpoints=view.endpoints,
        identities=view.identities, failures=s.failures, last_error=s.last_error,
        syncer=s.replica)


class ClusterMeshService(clustermesh_pb2_grpc.ClusterMeshServiceServicer):
    def __init__(self, connections: Connections, keys: Keys, cache: ClusterCache,
                 statuses: Callable[[], Mapping[str, NodeStatus]]) -> None:
        self.connections = connections
        self.statuses = statuses
        """Each node's subscription status (the fan-out's)."""
        self.keys = keys
        self.cache = cache

    @rpc
    async def Connect(self, request: pb.ConnectClusterRequest,
                      context: grpc.aio.ServicerContext) -> pb.RemoteCluster:
        record = await self.connections.connect(ConnectRequest(
            request.name, list(request.etcd_endpoints), request.etcd_cacert,
            request.etcd_cert, request.etcd_key))
        return remote_message(record)

    @rpc
    async def Disconnect(self, request: pb.DisconnectClusterRequest,
                         context: grpc.aio.ServicerContext) -> pb.DisconnectClusterResponse:
        await self.connections.disconnect(request.name)
        return pb.DisconnectClusterResponse()

    @rpc
    async def Status(self, request: pb.ClusterMeshStatusRequest,
                     context: grpc.aio.ServicerContext) -> pb.ClusterMeshStatusResponse:
        local = self.connections.local
        acked = {name: s.acked_revision for name, s in self.statuses().items() if s.connected}
        nodes, per_remote, synced = nodes_with_remotes(self.keys, self.cache, acked)
        return pb.ClusterMeshStatusResponse(
            cluster_name=local.name, cluster_id=local.id,
            remotes=[status_message(v, per_remote.get(v.remote.name, 0))
                     for v in remote_views(self.keys, self.cache)],
            nodes=nodes, nodes_with_all_remotes=synced)
