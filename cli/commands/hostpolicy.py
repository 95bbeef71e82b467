"""`bulkhead policy resolve --node` and `policy trace --src-node/--dst-node`: host policies
(nodeSelector), asked of HostPolicyService."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bulkhead.v1 import hostpolicy_pb2 as pb
from bulkhead.v1 import hostpolicy_pb2_grpc, policy_pb2

from ..output import emit_json, table

TIMEOUT = 30


def _stub(ctx: Any) -> hostpolicy_pb2_grpc.HostPolicyServiceStub:
    return ctx.stub(hostpolicy_pb2_grpc.HostPolicyServiceStub)


def run_resolve_host(ctx: Any, origin: Callable[[policy_pb2.RuleOrigin], dict[str, str]],
                     ports: Callable[[dict[str, Any]], str]) -> int:
    """`origin` and `ports` format as `policy resolve --identity` does (policy.py's)."""
    result = _stub(ctx).ResolveHost(pb.ResolveHostRequest(node=ctx.args.node), timeout=TIMEOUT)
    entries = [{"direction": e.direction, "peer": e.peer, "peer_node": e.peer_node,
                "protocol": e.protocol, "port_lo": e.port_lo, "port_hi": e.port_hi,
                "verdict": e.verdict, "origins": [origin(o) for o in e.origins]}
               for e in result.entries]
    if ctx.json:
        emit_json({"node": result.node, "labels": list(result.labels),
                   "ingress_enforced": result.ingress_enforced,
                   "egress_enforced": result.egress_enforced, "revision": result.revision,
                   "entries": entries})
        return 0
    print(f"host of node {result.node} ({','.join(result.labels)}): ingress "
          f"{'enforced' if result.ingress_enforced else 'not enforced'}, egress "
          f"{'enforced' if result.egress_enforced else 'not enforced'}")
    table(["DIRECTION", "VERDICT", "PEER", "PORTS", "FROM"],
          [(e["direction"], e["verdict"],
            f"node {e['peer_node']}" if e["peer_node"] else (e["peer"] or "any"), ports(e),
            [f"{o['policy']} {o['rule']}" for o in e["origins"]]) for e in entries])
    return 0


def trace_host(ctx: Any, port: int, proto: str) -> policy_pb2.TracePolicyResponse:
    args = ctx.args
    response: policy_pb2.TracePolicyResponse = _stub(ctx).TraceHost(pb.TraceHostRequest(
        src_node=args.src_node or "", src_labels=args.src or [], dst_node=args.dst_node or "",
        dst_labels=args.dst or [], dport=port, protocol=proto), timeout=TIMEOUT)
    return response
