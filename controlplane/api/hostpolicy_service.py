"""HostPolicyService: thin over `controlplane.policystore.hosts.HostPolicies`."""

from __future__ import annotations

import grpc

from bulkhead.v1 import hostpolicy_pb2 as pb
from bulkhead.v1 import hostpolicy_pb2_grpc, policy_pb2
from controlplane.policy import Protocol
from controlplane.policystore.hosts import HostPolicies

from .errors import rpc
from .policy_service import origin, side


class HostPolicyService(hostpolicy_pb2_grpc.HostPolicyServiceServicer):
    def __init__(self, hosts: HostPolicies) -> None:
        self.hosts = hosts

    @rpc
    async def ResolveHost(self, request: pb.ResolveHostRequest,
                          context: grpc.aio.ServicerContext) -> pb.ResolveHostResponse:
        found = self.hosts.resolve(request.node)
        policy = found.policy
        return pb.ResolveHostResponse(
            node=policy.node, labels=list(policy.labels),
            ingress_enforced=policy.ingress_enforced, egress_enforced=policy.egress_enforced,
            entries=[pb.HostPolicyEntry(direction=str(e.direction), peer=e.peer,
                                        peer_node=e.peer_node,
                                        protocol=Protocol(e.protocol).name,
                                        port_lo=e.port_lo, port_hi=e.port_hi,
                                        verdict=str(e.verdict),
                                        origins=[origin(r) for r in policy.origins.get(e, ())])
                     for e in policy.entries],
            revision=found.revision)

    @rpc
    async def TraceHost(self, request: pb.TraceHostRequest,
                        context: grpc.aio.ServicerContext) -> policy_pb2.TracePolicyResponse:
        found = self.hosts.trace(request.src_node, list(request.src_labels), request.dst_node,
                                 list(request.dst_labels), request.dport, request.protocol)
        return policy_pb2.TracePolicyResponse(
            verdict=found.trace.verdict.value, egress=side(found.trace.egress),
            ingress=side(found.trace.ingress), src_labels=list(found.src),
            dst_labels=list(found.dst))
