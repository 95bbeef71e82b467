"""`FqdnService` on the agent's local API: the FQDN cache, as `cilium fqdn cache list`."""

from __future__ import annotations

import grpc

from bulkhead import fqdnmatch
from bulkhead.errors import FieldViolation, Invalid
from bulkhead.rpcerror import servicer_method
from bulkhead.v1 import fqdn_pb2, fqdn_pb2_grpc
from nodeagent.fqdn.cache import FqdnCache


class FqdnService(fqdn_pb2_grpc.FqdnServiceServicer):
    def __init__(self, node: str, cache: FqdnCache | None) -> None:
        self.node = node
        self.cache = cache

    @servicer_method("agent")
    async def ListFqdnCache(self, request: fqdn_pb2.ListFqdnCacheRequest,
                            context: grpc.aio.ServicerContext) -> fqdn_pb2.ListFqdnCacheResponse:
        pattern = request.match_pattern
        if pattern and (problem := fqdnmatch.pattern_problem(pattern)) is not None:
            raise Invalid([FieldViolation("match_pattern", f"{pattern[:80]!r} {problem}")])
        out = fqdn_pb2.ListFqdnCacheResponse(node=self.node)
        if self.cache is None:
            return out
        for r in self.cache.entries(pattern):
            out.entries.append(fqdn_pb2.FqdnCacheEntry(
                endpoint=r.endpoint, endpoint_id=r.endpoint_id, name=r.name, ip=r.ip,
                identity=self.cache.ids.get(r.ip, 0), ttl=r.ttl, expires_at=r.expires_at,
                learnt_at=r.learnt_at))
        return out
