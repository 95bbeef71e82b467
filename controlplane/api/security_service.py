"""Node credentials over gRPC; thin over controlplane.pki (tokens, issuer, revocation)."""

from __future__ import annotations

import grpc

from bulkhead.v1 import security_pb2 as pb
from bulkhead.v1 import security_pb2_grpc
from controlplane import callers
from controlplane.pki.issuer import Issued, NodeIssuer
from controlplane.pki.tokens import TokenStore
from controlplane.records.codec import JoinTokenRecord

from .errors import rpc


def credential(issued: Issued) -> pb.NodeCredential:
    return pb.NodeCredential(certificate=issued.cert_pem, ca=issued.ca_pem,
                             not_after_unix=int(issued.not_after.timestamp()),
                             serial=f"{issued.serial:x}")


def token_info(info: JoinTokenRecord) -> pb.TokenInfo:
    return pb.TokenInfo(id=info.id, node=info.node, expires_unix=int(info.expires),
                        created_unix=int(info.created))


class SecurityService(security_pb2_grpc.SecurityServiceServicer):
    def __init__(self, tokens: TokenStore, issuer: NodeIssuer) -> None:
        self.tokens = tokens
        self.issuer = issuer

    @rpc
    async def Join(self, request: pb.JoinRequest,
                   context: grpc.aio.ServicerContext) -> pb.NodeCredential:
        return credential(await self.issuer.join(request.token, request.csr))

    @rpc
    async def Renew(self, request: pb.RenewRequest,
                    context: grpc.aio.ServicerContext) -> pb.NodeCredential:
        return credential(await self.issuer.renew(callers.current(), request.csr))

    @rpc
    async def CreateToken(self, request: pb.CreateTokenRequest,
                          context: grpc.aio.ServicerContext) -> pb.CreateTokenResponse:
        token, info = await self.tokens.create(request.ttl_seconds, request.node)
        return pb.CreateTokenResponse(token=token, info=token_info(info))

    @rpc
    async def ListTokens(self, request: pb.ListTokensRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListTokensResponse:
        return pb.ListTokensResponse(tokens=[token_info(t) for t in await self.tokens.list()])

    @rpc
    async def RevokeToken(self, request: pb.RevokeTokenRequest,
                          context: grpc.aio.ServicerContext) -> pb.RevokeTokenResponse:
        await self.tokens.revoke(request.id)
        return pb.RevokeTokenResponse()

    @rpc
    async def RevokeNode(self, request: pb.RevokeNodeRequest,
                         context: grpc.aio.ServicerContext) -> pb.RevokeNodeResponse:
        serials = await self.issuer.revoke_node(request.node)
        return pb.RevokeNodeResponse(serials=[f"{s:x}" for s in serials])
