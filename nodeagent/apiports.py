"""Where the agent's API listens, and who may call it there.

The unix socket is the node's root-only door (mode 0600, created so from the first moment:
the bind happens under a umask that leaves no group or other bits). The TCP port exists for
the control plane's flow relay; with node credentials (the default) it speaks mutual TLS with the
node certificate and answers only a client whose certificate, from the cluster CA, names the
control plane (CN `bulkhead-controlplane`): another node, an admin or anyone else on the host
gets PERMISSION_DENIED (no certificate at all: the handshake fails).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc

from bulkhead import tls
from bulkhead.errors import PermissionDenied
from bulkhead.rpcerror import abort
from bulkhead.rpcguard import WrappingServer

SOCKET_MODE = 0o600


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def bind_unix(server: grpc.aio.Server, path: Path) -> None:
    """Binds the unix socket; call `secure_socket` once the server started."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a previous agent's socket (it was killed)
    with _umask(0o177):
        server.add_insecure_port(f"unix:{path}")


def secure_socket(path: Path) -> None:
    """0600 whatever the listener did (gRPC creates the file when the server starts)."""
    os.chmod(path, SOCKET_MODE)


def bind_tcp(server: grpc.aio.Server, listen: str,
             credentials: Callable[[], tls.Pem] | None) -> int:
    """The TCP port; mutual TLS with the node certificate when `credentials` (the current
    one: read at every handshake, so a renewed certificate is served without a restart)."""
    if credentials is None:
        return server.add_insecure_port(listen)
    served = [credentials()]

    def configuration(pem: tls.Pem) -> Any:
        return grpc.ssl_server_certificate_configuration([(pem.key, pem.cert)],
                                                         root_certificates=pem.ca)

    def fetch() -> Any:
        pem = credentials()
        if pem is served[0]:
            return None  # unchanged
        served[0] = pem
        return configuration(pem)

    return server.add_secure_port(listen, grpc.dynamic_ssl_server_credentials(
        configuration(served[0]), fetch, require_client_authentication=True))


def _peer_cn(context: grpc.aio.ServicerContext) -> str | None:
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode() if names else None


def _checked(behaviour: Any, streaming_response: bool) -> Any:
    async def refuse(context: grpc.aio.ServicerContext, cn: str) -> None:
        await abort(context, PermissionDenied(
            f"the agent API answers only the control plane; {cn!r} is not it"))

    if streaming_response:
        async def generate(request: Any, context: grpc.aio.ServicerContext) -> Any:
            cn = _peer_cn(context)
            if cn is not None and cn != tls.CONTROLPLANE_NAME:
                await refuse(context, cn)
            async for response in behaviour(request, context):
                yield response

        return generate

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        cn = _peer_cn(context)
        if cn is not None and cn != tls.CONTROLPLANE_NAME:
            await refuse(context, cn)
        return await behaviour(request, context)

    return call


def _only_controlplane(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A peer with a certificate (the TLS port) must be the control plane; a peer without
    one came through the unix socket (the TLS port requires a certificate)."""
    if handler.request_streaming:
        return handler  # the agent API has no client-streaming methods
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(
            _checked(handler.unary_stream, True), handler.request_deserializer,
            handler.response_serializer)
    return grpc.unary_unary_rpc_method_handler(
        _checked(handler.unary_unary, False), handler.request_deserializer,
        handler.response_serializer)


class ControlPlaneOnly(WrappingServer):
    """Stands for the server while the agent API registers (wraps rpcguard's GuardedServer
    the same way controlplane.api.authz does)."""

    def __init__(self, server: Any) -> None:
        super().__init__(server, lambda _method, handler: _only_controlplane(handler))
