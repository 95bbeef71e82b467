"""PolicyImpactService: thin over `controlplane.policystore.impact.PolicyImpact`."""

from __future__ import annotations

import grpc

from bulkhead.v1 import policy_pb2 as pb
from bulkhead.v1 import policyimpact_pb2 as ipb
from bulkhead.v1 import policyimpact_pb2_grpc
from controlplane.policy import to_yaml
from controlplane.policystore.impact import Connection, PolicyImpact
from controlplane.policystore.store import TraceResult, policy_key

from .errors import rpc
from .policy_service import side


def traced(found: TraceResult) -> pb.TracePolicyResponse:
    return pb.TracePolicyResponse(verdict=found.trace.verdict.value,
                                  egress=side(found.trace.egress),
                                  ingress=side(found.trace.ingress),
                                  src_labels=list(found.src), dst_labels=list(found.dst))


class PolicyImpactService(policyimpact_pb2_grpc.PolicyImpactServiceServicer):
    def __init__(self, impact: PolicyImpact) -> None:
        self.impact = impact

    @rpc
    async def TraceProposed(self, request: ipb.TraceProposedRequest,
                            context: grpc.aio.ServicerContext) -> ipb.TraceProposedResponse:
        remove = [policy_key(r.kind, r.namespace, r.name, f"remove[{i}]")
                  for i, r in enumerate(request.remove)]
        connections = [Connection(list(c.src_labels), list(c.dst_labels), c.dport, c.protocol,
                                  (c.http_method, c.http_path, c.http_host, []), c.side)
                       for c in request.connections]
        found = await self.impact.trace_proposed(request.yaml, remove, connections)
        return ipb.TraceProposedResponse(
            results=[ipb.ConnectionImpact(current=traced(i.current), proposed=traced(i.proposed),
                                          changed=i.changed) for i in found.impacts],
            policies=[pb.PolicyInfo(kind=p.kind, namespace=p.key.namespace, name=p.key.name,
                                    rules=len(p.rules), yaml=to_yaml(p))
                      for p in found.policies])
