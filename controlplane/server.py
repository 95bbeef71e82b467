"""The gRPC server: agent-facing services, the admin API, health and reflection."""

from __future__ import annotations

import functools

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from bulkhead.rpcguard import guarded
from bulkhead.tls import add_port, server_credentials
from bulkhead.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    clustermesh_pb2,
    clustermesh_pb2_grpc,
    connectivity_pb2,
    connectivity_pb2_grpc,
    endpoint_pb2,
    endpoint_pb2_grpc,
    hostpolicy_pb2,
    hostpolicy_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    nodelabels_pb2,
    nodelabels_pb2_grpc,
    observer_pb2,
    observer_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    policyimpact_pb2,
    policyimpact_pb2_grpc,
    security_pb2,
    security_pb2_grpc,
    service_pb2,
    service_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
)
from controlplane.api.admin_service import AdminService
from controlplane.api.authz import AuthorizedServer, Authorizer
from controlplane.api.clustermesh_service import ClusterMeshService
from controlplane.api.connectivity_service import ConnectivityService
from controlplane.api.endpoint_service import EndpointService
from controlplane.api.health import HealthServicer
from controlplane.api.hostpolicy_service import HostPolicyService
from controlplane.api.identity_service import IdentityService
from controlplane.api.node_service import NodeLabelService, NodeService
from controlplane.api.observer_service import ObserverService
from controlplane.api.policy_service import PolicyService
from controlplane.api.policyimpact_service import PolicyImpactService
from controlplane.api.security_service import SecurityService
from controlplane.api.service_service import ServiceService
from controlplane.api.status import ReplicaInfo, StatusReporter
from controlplane.api.streamcap import StreamCap, StreamCappedServer
from controlplane.api.subscription_service import SubscriptionAdminService, SubscriptionService
from controlplane.app import ControlPlane
from controlplane.clustermesh.status import (
    remote_identity_labels,
    remote_records,
    remote_views,
)
from controlplane.connectivity.lock import ConnectivityLock
from controlplane.connectivity.relay import ConnectivityRelay
from controlplane.counts import ObjectCounts
from controlplane.metrics import Sources
from controlplane.pki.bootstrap import ServerTls
from controlplane.pki.security import Security
from controlplane.policystore.hosts import HostPolicies
from controlplane.policystore.impact import PolicyImpact


def object_counts(cp: ControlPlane) -> ObjectCounts:
    return ObjectCounts(cp.cache, cp.keys, cp.identity_index, cp.services.counts)


def status_reporter(cp: ControlPlane) -> StatusReporter:
    config = cp.config
    return StatusReporter(
        ReplicaInfo(config.replica_id, cp.version, config.cluster_name, config.cluster_id),
        etcd=cp.etcd, cache=cp.cache, counts=object_counts(cp),
        policies=cp.policy_resolver.policy_count, subscriptions=cp.subscriptions,
        presence=cp.presence, embedded=cp.embedded)


def admin_service(cp: ControlPlane) -> AdminService:
    return AdminService(status_reporter(cp), allocator=cp.allocator,
                        identities=cp.identity_index, nodes=cp.nodes, endpoints=cp.endpoints,
                        enforcement=cp.policy_resolver.enforcement,
                        remote=functools.partial(remote_records, cp.keys, cp.cache))


def metrics_sources(cp: ControlPlane) -> Sources:
    """What /metrics reads (controlplane.metrics.serve); the application is started."""
    return Sources(
        allocator=cp.allocator, group=cp.allocator.group, collector=cp.collector,
        identities=cp.identity_index, counts=object_counts(cp),
        cache=cp.cache, subscriptions=cp.subscriptions, hub=cp.subscriptions.hub,
        resolution=lambda: cp.policy_resolver.resolution_seconds, embedded=cp.embedded,
        clustermesh=lambda: remote_views(cp.keys, cp.cache))


async def build_server(cp: ControlPlane, listen: str, unix_socket: str | None = None,
                       tls: ServerTls | None = None) -> tuple[grpc.aio.Server, int]:
    """Returns the (not yet started) server and the TCP port bound. With `tls`, every port
    speaks mutual TLS and every call is checked against controlplane.api.authz.TABLE."""
    server = grpc.aio.server(options=[
        # --max-message-bytes: gRPC refuses a larger request with RESOURCE_EXHAUSTED
        # ("received message larger than max (N vs. LIMIT)") before any servicer runs.
        ("grpc.max_receive_message_length", cp.config.max_message_bytes),
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ])
    # Every service registers through `guarded`: a request that does not decode is answered
    # INVALID_ARGUMENT instead of UNKNOWN.
    services = guarded(server)
    security = None
    if tls is not None:
        security = await Security.start(cp, tls)
        services = AuthorizedServer(services, Authorizer(revocations=security.revocations))
        security_pb2_grpc.add_SecurityServiceServicer_to_server(
            SecurityService(security.tokens, security.issuer), services)
    # --max-streams-per-peer: every streaming method counts its open calls per connection.
    services = StreamCappedServer(services, StreamCap(cp.config.max_streams_per_peer))
    identity_pb2_grpc.add_IdentityServiceServicer_to_server(
        IdentityService(cp.allocator, functools.partial(remote_identity_labels, cp.keys,
                                                        cp.cache)), services)
    node_pb2_grpc.add_NodeServiceServicer_to_server(
        NodeService(cp.nodes, None if security is None else security.issuer.revoke_node),
        services)
    endpoint_pb2_grpc.add_EndpointServiceServicer_to_server(EndpointService(cp.endpoints),
                                                            services)
    nodelabels_pb2_grpc.add_NodeLabelServiceServicer_to_server(NodeLabelService(cp.nodes),
                                                               services)
    hostpolicy_pb2_grpc.add_HostPolicyServiceServicer_to_server(
        HostPolicyService(HostPolicies(cp.policy_resolver, cp.nodes, cp.allocator)), services)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(admin_service(cp), services)
    observer_pb2_grpc.add_ObserverServiceServicer_to_server(ObserverService(cp.relay), services)
    policy_pb2_grpc.add_PolicyServiceServicer_to_server(PolicyService(cp.policies), services)
    service_pb2_grpc.add_ServiceServiceServicer_to_server(ServiceService(cp.services), services)
    policyimpact_pb2_grpc.add_PolicyImpactServiceServicer_to_server(  # the console's what-if
        PolicyImpactService(PolicyImpact(cp.policies)), services)
    services.add_generic_rpc_handlers([SubscriptionService(cp.subscriptions).handler()])
    subscription_pb2_grpc.add_SubscriptionAdminServiceServicer_to_server(
        SubscriptionAdminService(cp.subscriptions), services)
    clustermesh_pb2_grpc.add_ClusterMeshServiceServicer_to_server(
        ClusterMeshService(cp.connections, cp.keys, cp.cache, cp.subscriptions.statuses),
        services)
    connectivity_pb2_grpc.add_ConnectivityServiceServicer_to_server(
        ConnectivityService(ConnectivityRelay(cp.nodes, cp.relay),
                            ConnectivityLock(cp.etcd, cp.keys, cp.config.replica_id)), services)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, services)
    names = [
        identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name,
        node_pb2.DESCRIPTOR.services_by_name["NodeService"].full_name,
        nodelabels_pb2.DESCRIPTOR.services_by_name["NodeLabelService"].full_name,
        hostpolicy_pb2.DESCRIPTOR.services_by_name["HostPolicyService"].full_name,
        endpoint_pb2.DESCRIPTOR.services_by_name["EndpointService"].full_name,
        admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
        observer_pb2.DESCRIPTOR.services_by_name["ObserverService"].full_name,
        policy_pb2.DESCRIPTOR.services_by_name["PolicyService"].full_name,
        service_pb2.DESCRIPTOR.services_by_name["ServiceService"].full_name,
        policyimpact_pb2.DESCRIPTOR.services_by_name["PolicyImpactService"].full_name,
        subscription_pb2.DESCRIPTOR.services_by_name["SubscriptionService"].full_name,
        subscription_pb2.DESCRIPTOR.services_by_name["SubscriptionAdminService"].full_name,
        clustermesh_pb2.DESCRIPTOR.services_by_name["ClusterMeshService"].full_name,
        connectivity_pb2.DESCRIPTOR.services_by_name["ConnectivityService"].full_name,
        *([] if security is None else
          [security_pb2.DESCRIPTOR.services_by_name["SecurityService"].full_name]),
    ]
    for name in [*names, ""]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    # Not enable_server_reflection(), which picks its asyncio servicer only for a real server.
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer([*names, health.SERVICE_NAME, reflection.SERVICE_NAME]),
        services)
    credentials = None if tls is None else server_credentials(tls.ca_pem, tls.cert_pem,
                                                                   tls.key_pem)
    port = add_port(server, listen, credentials)
    if port == 0:
        raise RuntimeError(f"cannot listen on {listen}")
    if unix_socket:
        add_port(server, f"unix:{unix_socket}", credentials)
    return server, port


def join_listen(config_listen: str, port: int, explicit: str | None) -> str:
    """`--join-listen`, else the --listen host at the bound port + 1."""
    if explicit:
        return explicit
    return f"{config_listen.rsplit(':', 1)[0]}:{port + 1}"


def add_join_port(server: grpc.aio.Server, listen: str, tls: ServerTls) -> int:
    """The port a node without a certificate joins on: server-authenticated TLS only, so the
    authorization layer sees an anonymous caller, who may call only SecurityService/Join.
    Returns the port bound."""
    port = add_port(server, listen, server_credentials(tls.ca_pem, tls.cert_pem, tls.key_pem,
                                                       require_client=False))
    if port == 0:
        raise RuntimeError(f"cannot listen on {listen} (--join-listen)")
    return port
