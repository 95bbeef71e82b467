"""PolicyService: thin over `controlplane.policystore.store.PolicyStore`."""

from __future__ import annotations

import grpc

from bulkhead import httprules
from bulkhead.v1 import policy_pb2 as pb
from bulkhead.v1 import policy_pb2_grpc, subscription_pb2
from controlplane.policy import HttpRuleRef, Protocol, RuleRef, SideTrace
from controlplane.policystore.store import (
    PolicyStore,
    Resolution,
    kind_of,
    policy_key,
)
from controlplane.records import messages

from .errors import rpc


def origin(ref: RuleRef) -> pb.RuleOrigin:
    return pb.RuleOrigin(kind=kind_of(ref.policy), namespace=ref.policy.namespace,
                         name=ref.policy.name, rule=ref.rule)


def resolution(found: Resolution) -> pb.ResolvePolicyResponse:
    resolved = found.resolved
    return pb.ResolvePolicyResponse(
        identity=found.identity, labels=list(found.labels),
        ingress_enforced=resolved.ingress_enforced, egress_enforced=resolved.egress_enforced,
        entries=[pb.ResolvedEntry(direction=str(e.direction), peer=e.peer,
                                  protocol=Protocol(e.protocol).name, port_lo=e.port_lo,
                                  port_hi=e.port_hi, verdict=str(e.verdict),
                                  origins=[origin(r) for r in resolved.origins.get(e, ())],
                                  l7=(subscription_pb2.PolicyEntry.HTTP if e.http
                                      else subscription_pb2.PolicyEntry.NONE),
                                  http=[httprules.to_proto(r) for r in e.http],
                                  peer_fqdn=found.peer_fqdns.get(e.peer, ""))
                 for e in resolved.entries],
        revision=found.revision, dns_patterns=list(resolved.dns))


def http_origin(item: HttpRuleRef) -> pb.HttpRuleOrigin:
    return pb.HttpRuleOrigin(origin=origin(item.ref), item=item.path,
                             rule=httprules.to_proto(item.rule))


def side(trace: SideTrace) -> pb.TraceSide:
    out = pb.TraceSide(verdict=trace.verdict.value, enforced=trace.enforced,
                       reason=trace.reason,
                       enforced_by=[origin(r) for r in trace.enforced_by],
                       http_rules=[http_origin(i) for i in trace.http_rules])
    if trace.decided_by is not None:
        out.decided_by.CopyFrom(origin(trace.decided_by))
    if trace.http_decided_by is not None:
        out.http_decided_by.CopyFrom(http_origin(trace.http_decided_by))
    return out


class PolicyService(policy_pb2_grpc.PolicyServiceServicer):
    def __init__(self, store: PolicyStore) -> None:
        self.store = store

    @rpc
    async def Apply(self, request: pb.ApplyPoliciesRequest,
                    context: grpc.aio.ServicerContext) -> pb.ApplyPoliciesResponse:
        result = await self.store.apply(request.yaml)
        return pb.ApplyPoliciesResponse(
            policies=[pb.AppliedPolicy(policy=messages.policy_info(a.record, with_yaml=True),
                                       action=a.action) for a in result.applied],
            revision=result.revision, affected_identities=result.affected)

    @rpc
    async def List(self, request: pb.ListPoliciesRequest,
                   context: grpc.aio.ServicerContext) -> pb.ListPoliciesResponse:
        records = await self.store.policies(request.namespace)
        return pb.ListPoliciesResponse(policies=[messages.policy_info(r) for r in records])

    @rpc
    async def Get(self, request: pb.GetPolicyRequest,
                  context: grpc.aio.ServicerContext) -> pb.PolicyInfo:
        ref = request.policy
        record = await self.store.get(policy_key(ref.kind, ref.namespace, ref.name))
        return messages.policy_info(record, with_yaml=True)

    @rpc
    async def Delete(self, request: pb.DeletePolicyRequest,
                     context: grpc.aio.ServicerContext) -> pb.DeletePolicyResponse:
        ref = request.policy
        result = await self.store.delete(policy_key(ref.kind, ref.namespace, ref.name))
        return pb.DeletePolicyResponse(revision=result.revision,
                                       affected_identities=result.affected,
                                       released_identities=result.released)

    @rpc
    async def Resolve(self, request: pb.ResolvePolicyRequest,
                      context: grpc.aio.ServicerContext) -> pb.ResolvePolicyResponse:
        return resolution(self.store.resolve(request.identity))

    @rpc
    async def Trace(self, request: pb.TracePolicyRequest,
                    context: grpc.aio.ServicerContext) -> pb.TracePolicyResponse:
        found = self.store.trace(list(request.src_labels), list(request.dst_labels),
                                 request.dport, request.protocol,
                                 (request.http_method, request.http_path, request.http_host,
                                  list(request.http_headers)))
        return pb.TracePolicyResponse(verdict=found.trace.verdict.value,
                                      egress=side(found.trace.egress),
                                      ingress=side(found.trace.ingress),
                                      src_labels=list(found.src), dst_labels=list(found.dst))
