"""The agent's unary calls to the control plane: create, delete and list its endpoints.

Tries each control-plane address in turn while one is unavailable, so a replica that dies
does not fail an AddEndpoint.  Only `bulkhead.v1` is shared with the control plane.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from bulkhead import tls
from bulkhead.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    endpoint_pb2,
    endpoint_pb2_grpc,
    types_pb2,
)

TIMEOUT = 15.0
_RETRY = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class ControlPlaneClient:
    def __init__(self, node: str, addresses: Sequence[str],
                 credentials: tls.Material | None = None) -> None:
        self.node = node
        self.addresses = list(addresses)
        self._channels = [tls.aio_channel(a, credentials) for a in self.addresses]
        self._retired: list[grpc.aio.Channel] = []
        self._index = 0

    def use_credentials(self, credentials: tls.Material) -> None:
        """A renewed node certificate: calls from now on use it (calls in flight finish)."""
        self._retired.extend(self._channels)
        self._channels = [tls.aio_channel(a, credentials) for a in self.addresses]

    async def _call(self, stub_type: type, method: str, request: object) -> object:
        last: grpc.aio.AioRpcError | None = None
        for attempt in range(len(self._channels)):
            i = (self._index + attempt) % len(self._channels)
            stub = stub_type(self._channels[i])
            try:
                result = await getattr(stub, method)(request, timeout=TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _RETRY:
                    raise
                last = exc
                continue
            self._index = i
            return result
        assert last is not None
        raise last

    async def create(self, namespace: str, name: str, labels: Sequence[str],
                     ip: str = "", ports: Sequence[tuple[str, int, str]] = ()
                     ) -> types_pb2.Endpoint:
        request = endpoint_pb2.CreateEndpointRequest(
            node=self.node, namespace=namespace, name=name, labels=list(labels), ip=ip,
            ports=[types_pb2.EndpointPort(name=n, port=p, protocol=proto)
                   for n, p, proto in ports])
        result = await self._call(endpoint_pb2_grpc.EndpointServiceStub, "Create", request)
        assert isinstance(result, types_pb2.Endpoint)
        return result

    async def delete(self, namespace: str, name: str) -> bool:
        """False when the control plane did not know the endpoint."""
        request = endpoint_pb2.DeleteEndpointRequest(namespace=namespace, name=name)
        try:
            await self._call(endpoint_pb2_grpc.EndpointServiceStub, "Delete", request)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return True

    async def node_endpoints(self) -> list[types_pb2.Endpoint]:
        out: list[types_pb2.Endpoint] = []
        token = ""
        while True:
            request = admin_pb2.ListEndpointsRequest(node=self.node, page_size=1000,
                                                     page_token=token)
            page = await self._call(admin_pb2_grpc.AdminServiceStub, "ListEndpoints", request)
            assert isinstance(page, admin_pb2.ListEndpointsResponse)
            out.extend(page.endpoints)
            token = page.next_page_token
            if not token:
                return out

    async def close(self) -> None:
        for channel in [*self._channels, *self._retired]:
            await channel.close()
