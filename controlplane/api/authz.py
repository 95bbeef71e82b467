"""Who may call what: the one table, and the layer that enforces it on every call (none with
`--insecure`).

Roles come from the peer certificate (controlplane.pki.certs: CN = name, O = bulkhead:ROLE):
- admin: the operator (`bulkhead` with the admin credential); may call everything.
- node: an agent (CN = its node name); may speak only for its own node: the request field
  named in `Rule.own_node` must be its name (checked here), the endpoint it deletes must be on
  it and its subscription must be its own (checked where the stored state is: the endpoint
  registry, the subscription's hello).
- reader: read-only views (status, lists, flows, traces); writes nothing.
- anonymous (no certificate, the join port only): the join.
A method missing from the table is refused to everyone (tests/test_authz.py walks every
method of every service the server registers and checks it is here).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from cryptography import x509

from bulkhead.errors import BulkheadError, PermissionDenied, Unauthenticated
from bulkhead.rpcerror import abort
from bulkhead.rpcguard import Malformed, WrappingServer
from controlplane import callers
from controlplane.callers import ADMIN, ANONYMOUS, NODE, READER, Caller
from controlplane.pki.certs import subject_of
from controlplane.pki.revocation import Revocations


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str]
    own_node: str = ""
    """For a node caller: the request field that must name its own node."""


def rule(*roles: str, own_node: str = "") -> Rule:
    return Rule(frozenset(roles), own_node)


READ = rule(ADMIN, READER)
WRITE = rule(ADMIN)
ANYONE_KNOWN = rule(ADMIN, READER, NODE)

TABLE: dict[str, Rule] = {
    # identities: allocated by the control plane for endpoints; by hand only by the admin
    "bulkhead.v1.IdentityService/Allocate": WRITE,
    "bulkhead.v1.IdentityService/Release": WRITE,
    "bulkhead.v1.IdentityService/Lookup": READ,
    "bulkhead.v1.IdentityService/LookupMany": READ,
    "bulkhead.v1.IdentityService/Get": READ,
    # nodes: an agent registers, heartbeats and deregisters its own node
    "bulkhead.v1.NodeService/Register": rule(ADMIN, NODE, own_node="name"),
    "bulkhead.v1.NodeService/Heartbeat": rule(ADMIN, NODE, own_node="name"),
    "bulkhead.v1.NodeService/Deregister": rule(ADMIN, NODE, own_node="name"),
    # node labels (what host policies select): the operator's, like policies
    "bulkhead.v1.NodeLabelService/Label": WRITE,
    # endpoints: an agent creates them on its node, deletes only its own (EndpointRegistry)
    "bulkhead.v1.EndpointService/Create": rule(ADMIN, NODE, own_node="node"),
    "bulkhead.v1.EndpointService/Delete": rule(ADMIN, NODE),
    "bulkhead.v1.EndpointService/Get": READ,
    # views
    "bulkhead.v1.AdminService/Status": READ,
    "bulkhead.v1.AdminService/ListIdentities": READ,
    "bulkhead.v1.AdminService/ListNodes": READ,
    "bulkhead.v1.AdminService/ListEndpoints": rule(ADMIN, READER, NODE, own_node="node"),
    "bulkhead.v1.AdminService/ListIPCache": READ,
    "bulkhead.v1.ObserverService/GetFlows": READ,
    "bulkhead.v1.ObserverService/ObserverStatus": READ,
    # policies and services: the admin writes, readers read
    "bulkhead.v1.PolicyService/Apply": WRITE,
    "bulkhead.v1.PolicyService/Delete": WRITE,
    "bulkhead.v1.PolicyService/List": READ,
    "bulkhead.v1.PolicyService/Get": READ,
    "bulkhead.v1.PolicyService/Resolve": READ,
    # a node may read its own host policy (agents get it through their subscription)
    "bulkhead.v1.HostPolicyService/ResolveHost": rule(ADMIN, READER, NODE, own_node="node"),
    "bulkhead.v1.HostPolicyService/TraceHost": READ,
    "bulkhead.v1.PolicyService/Trace": READ,
    # the console's what-if: traces against a proposed set, stores nothing
    "bulkhead.v1.PolicyImpactService/TraceProposed": READ,
    "bulkhead.v1.ServiceService/Apply": WRITE,
    "bulkhead.v1.ServiceService/Delete": WRITE,
    "bulkhead.v1.ServiceService/List": READ,
    "bulkhead.v1.ServiceService/Get": READ,
    # clustermesh: connecting clusters is the operator's
    "bulkhead.v1.ClusterMeshService/Connect": WRITE,
    "bulkhead.v1.ClusterMeshService/Disconnect": WRITE,
    "bulkhead.v1.ClusterMeshService/Status": READ,
    # connectivity tests: test pods and probes on the nodes are the operator's
    "bulkhead.v1.ConnectivityService/CreateTestPod": WRITE,
    "bulkhead.v1.ConnectivityService/RunProbe": WRITE,
    "bulkhead.v1.ConnectivityService/CleanupTestPods": WRITE,
    "bulkhead.v1.ConnectivityService/HoldTestLock": WRITE,
    # the agent's stream: as itself only (its hello names its node; SubscriptionService)
    "bulkhead.v1.SubscriptionService/Subscribe": rule(ADMIN, NODE),
    "bulkhead.v1.SubscriptionAdminService/ListSubscriptions": READ,
    "bulkhead.v1.SubscriptionAdminService/WaitForRevision": READ,
    # node credentials (controlplane.pki): the join is the one call without a certificate
    "bulkhead.v1.SecurityService/Join": rule(ANONYMOUS),
    "bulkhead.v1.SecurityService/Renew": rule(NODE),
    "bulkhead.v1.SecurityService/CreateToken": WRITE,
    "bulkhead.v1.SecurityService/ListTokens": WRITE,
    "bulkhead.v1.SecurityService/RevokeToken": WRITE,
    "bulkhead.v1.SecurityService/RevokeNode": WRITE,
    # plumbing
    "grpc.health.v1.Health/Check": ANYONE_KNOWN,
    "grpc.health.v1.Health/Watch": ANYONE_KNOWN,
    "grpc.health.v1.Health/List": ANYONE_KNOWN,
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": READ,
}


@functools.lru_cache(maxsize=4096)
def _subject(pem: bytes) -> tuple[str, str, int, float]:
    """Parsed once per distinct certificate (peers reconnect with the same one)."""
    s = subject_of(x509.load_pem_x509_certificate(pem))
    return s.name, s.role, s.serial, s.issued


def caller_of(context: grpc.aio.ServicerContext, method: str) -> Caller:
    """The caller as its certificate (verified by the TLS handshake) names it."""
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert") or []
    if not pems:
        return Caller("", ANONYMOUS, method)
    name, role, serial, issued = _subject(pems[0])
    if not role:
        raise Unauthenticated(f"the client certificate of {name!r} carries no Bulkhead role "
                              "(subject O=bulkhead:admin|node|reader)")
    return Caller(name, role, method, serial, issued)


class Authorizer:
    """Checks one call against `TABLE` (and the revoked serials) before its servicer runs."""

    def __init__(self, table: Mapping[str, Rule] = TABLE,
                 revocations: Revocations | None = None) -> None:
        self.table = table
        self.revocations = revocations

    def revoked(self, caller: Caller) -> bool:
        return self.revocations is not None and self.revocations.revoked(
            caller.serial, caller.name if caller.is_node else "", caller.issued)

    def check(self, method: str, context: grpc.aio.ServicerContext, request: Any) -> Caller:
        short = method.lstrip("/")
        caller = caller_of(context, short)
        if caller.serial and self.revoked(caller):
            raise Unauthenticated(f"certificate of {caller.name!r} (serial {caller.serial:x}) "
                                  "has been revoked")
        found = self.table.get(short)
        if found is None:
            raise PermissionDenied(f"{short} is not in the authorization table: refused to "
                                   "everyone")
        if caller.role not in found.roles:
            if caller.role == ANONYMOUS:
                raise Unauthenticated(f"{short} needs a client certificate from the cluster CA")
            who = f"node {caller.name!r}" if caller.is_node else \
                f"{caller.role} {caller.name!r}"
            raise PermissionDenied(f"{who} may not call {short} (allowed: "
                                   f"{', '.join(sorted(found.roles))})")
        if found.own_node and caller.is_node and not isinstance(request, Malformed):
            caller.require_node(getattr(request, found.own_node), "")
        return caller

    def wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        behaviour = (handler.stream_stream or handler.stream_unary or handler.unary_stream
                     or handler.unary_unary)
        streaming = handler.request_streaming
        check = self.check

        if inspect.isasyncgenfunction(behaviour):
            async def generate(request: Any, context: grpc.aio.ServicerContext) -> Any:
                token = await _enter(check, method, context, None if streaming else request)
                try:
                    async for response in behaviour(request, context):
                        yield response
                finally:
                    callers.reset(token)

            wrapped: Callable[..., Any] = generate
        else:
            revocations = self.revocations
            cuttable = revocations is not None and (streaming or handler.response_streaming)

            async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
                token = await _enter(check, method, context, None if streaming else request)
                try:
                    caller = callers.current()
                    if not cuttable or not caller.serial:
                        return await behaviour(request, context)
                    assert revocations is not None
                    return await _until_revoked(behaviour(request, context), context,
                                                revocations, caller)
                finally:
                    callers.reset(token)

            wrapped = call
        kind = (grpc.stream_stream_rpc_method_handler if streaming and handler.response_streaming
                else grpc.stream_unary_rpc_method_handler if streaming
                else grpc.unary_stream_rpc_method_handler if handler.response_streaming
                else grpc.unary_unary_rpc_method_handler)
        return kind(wrapped, handler.request_deserializer,  # type: ignore[operator]
                    handler.response_serializer)


async def _until_revoked(work: Awaitable[Any], context: grpc.aio.ServicerContext,
                         revocations: Revocations, caller: Caller) -> Any:
    """Runs a streaming call's servicer until it ends or the caller's certificate is
    revoked: then the stream is cut with UNAUTHENTICATED."""
    cut = revocations.cut(caller.serial, caller.name if caller.is_node else "", caller.issued)
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(cut.wait())
    try:
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
    finally:
        waiter.cancel()
        revocations.release(caller.serial)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    await abort(context, Unauthenticated(
        f"certificate of {caller.name!r} (serial {caller.serial:x}) has been revoked"))


async def _enter(check: Callable[..., Caller], method: str,
                 context: grpc.aio.ServicerContext, request: Any) -> Any:
    try:
        caller = check(method, context, request)
    except BulkheadError as exc:
        await abort(context, exc)
        raise  # unreachable: abort raises
    return callers.set_current(caller)


class AuthorizedServer(WrappingServer):
    """Stands for the server while services register (like rpcguard.GuardedServer, which it
    wraps): every method handler added is checked by `authorizer` first."""

    def __init__(self, server: Any, authorizer: Authorizer) -> None:
        super().__init__(server, authorizer.wrap)
        self.authorizer = authorizer
