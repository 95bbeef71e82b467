"""gRPC health with `List` (grpcio-health-checking's asyncio servicer leaves it to the base
class, a synchronous stub answering UNIMPLEMENTED, and UNKNOWN to a request that does not
decode, since rpcguard wraps only asynchronous servicers)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2


class HealthServicer(health.aio.HealthServicer):
    async def List(self, request: health_pb2.HealthListRequest,
                   context: grpc.aio.ServicerContext) -> health_pb2.HealthListResponse:
        """Every service's status, as Check gives them one by one."""
        return health_pb2.HealthListResponse(statuses={
            name: health_pb2.HealthCheckResponse(status=status)
            for name, status in self._server_status.items()})
