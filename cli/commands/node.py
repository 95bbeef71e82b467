"""`bulkhead node list`, `node label`; node credentials (not on `--insecure` control planes):
`node token create|list|revoke` and `node revoke`."""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Any

import grpc

from bulkhead.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    nodelabels_pb2,
    nodelabels_pb2_grpc,
    security_pb2,
    security_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
)

from ..argtypes import integer
from ..output import emit_json, output_flag, table, to_dict
from ._paging import all_pages


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("node", help="nodes and tunnel endpoints")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    ls = verbs.add_parser("list", help="list registered nodes")
    output_flag(ls)
    ls.set_defaults(run=run_list)
    label = verbs.add_parser("label", help="set (KEY=VALUE) or remove (KEY-) labels of a node, "
                                           "which host policies select nodes by")
    label.add_argument("name", help="the node")
    label.add_argument("labels", nargs="+", metavar="KEY=VALUE|KEY-",
                       help="a label to set, or a key followed by '-' to remove it")
    output_flag(label)
    label.set_defaults(run=run_label)
    token = verbs.add_parser("token", help="bootstrap tokens agents join with")
    token_verbs = token.add_subparsers(dest="token_verb", metavar="VERB", required=True)
    create = token_verbs.add_parser("create", help="a one-time join token, printed once")
    create.add_argument("--ttl", type=integer("--ttl", 1, 7 * 24 * 3600), default=0,
                        help="seconds the token may be used (default 3600)")
    create.add_argument("--node", default="", help="only this node name may join with it")
    output_flag(create)
    create.set_defaults(run=run_token_create)
    tls = token_verbs.add_parser("list", help="unused tokens (never their secret)")
    output_flag(tls)
    tls.set_defaults(run=run_token_list)
    revoke_token = token_verbs.add_parser("revoke", help="revoke an unused token")
    revoke_token.add_argument("id", help="the token's ID (the part before the dot)")
    revoke_token.set_defaults(run=run_token_revoke)
    revoke = verbs.add_parser("revoke", help="refuse every certificate issued to a node from "
                                             "now on and cut its streams")
    revoke.add_argument("name")
    output_flag(revoke)
    revoke.set_defaults(run=run_revoke)


def _security(ctx: Any) -> security_pb2_grpc.SecurityServiceStub:
    return ctx.stub(security_pb2_grpc.SecurityServiceStub)


def _time(unix: int) -> str:
    return datetime.datetime.fromtimestamp(unix, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_token_create(ctx: Any) -> int:
    made = _security(ctx).CreateToken(security_pb2.CreateTokenRequest(
        ttl_seconds=ctx.args.ttl, node=ctx.args.node), timeout=15)
    if ctx.json:
        emit_json({"token": made.token, **to_dict(made.info)})
    else:
        print(made.token)
    return 0


def run_token_list(ctx: Any) -> int:
    tokens = _security(ctx).ListTokens(security_pb2.ListTokensRequest(), timeout=15).tokens
    if ctx.json:
        emit_json([to_dict(t) for t in tokens])
        return 0
    table(["ID", "NODE", "EXPIRES", "CREATED"],
          [(t.id, t.node or "(any)", _time(t.expires_unix), _time(t.created_unix))
           for t in tokens])
    return 0


def run_token_revoke(ctx: Any) -> int:
    _security(ctx).RevokeToken(security_pb2.RevokeTokenRequest(id=ctx.args.id), timeout=15)
    print(f"token {ctx.args.id} revoked")
    return 0


def run_revoke(ctx: Any) -> int:
    done = _security(ctx).RevokeNode(security_pb2.RevokeNodeRequest(node=ctx.args.name),
                                     timeout=15)
    if ctx.json:
        emit_json({"node": ctx.args.name, "serials": list(done.serials)})
    else:
        print(f"node {ctx.args.name}: {len(done.serials)} certificate(s) revoked")
    return 0


def run_label(ctx: Any) -> int:
    """kubectl's syntax: `k=v` sets, `k-` removes; the control plane checks keys and values
    (a bad one is named by its place: `add[0]`, `remove[1]`)."""
    add: list[str] = []
    remove: list[str] = []
    for item in ctx.args.labels:
        if "=" in item:
            add.append(item)
        elif item.endswith("-") and len(item) > 1:
            remove.append(item[:-1])
        else:
            print(f"bulkhead: {item!r}: give KEY=VALUE to set a label or KEY- to remove one",
                  file=sys.stderr)
            return 1
    node = ctx.stub(nodelabels_pb2_grpc.NodeLabelServiceStub).Label(
        nodelabels_pb2.LabelNodeRequest(name=ctx.args.name, add=add, remove=remove), timeout=15)
    if ctx.json:
        emit_json(to_dict(node))
    else:
        print(f"node {node.name} labeled: {','.join(node.labels)}")
    return 0


def run_list(ctx: Any) -> int:
    nodes = all_pages(ctx.stub(admin_pb2_grpc.AdminServiceStub).ListNodes,
                      admin_pb2.ListNodesRequest(), "nodes")
    subs = subscriptions(ctx)
    if ctx.json:
        emit_json([to_dict(n) | _sub_fields(subs.get(n.name)) for n in nodes])
        return 0
    rows = []
    for n in nodes:
        s = _sub_fields(subs.get(n.name))
        rows.append((n.name, n.node_id, n.underlay_ip, n.pod_cidr,
                     f"{n.tunnel.ip}:{n.tunnel.port}", s["replica"] or "-",
                     s["connected_since"] or "-", s["acked_revision"], s["lag_revisions"],
                     s["resumes"], s["snapshots"], ",".join(n.labels) or "-"))
    table(["NAME", "NODE ID", "UNDERLAY IP", "POD CIDR", "TUNNEL ENDPOINT", "REPLICA",
           "CONNECTED SINCE", "ACKED REV", "LAG", "RESUMES", "SNAPSHOTS", "LABELS"], rows)
    return 0


def subscriptions(ctx: Any) -> dict[str, subscription_pb2.NodeSubscription]:
    """Per-node subscription status; empty from a control plane without the service."""
    stub = ctx.stub(subscription_pb2_grpc.SubscriptionAdminServiceStub)
    try:
        response = stub.ListSubscriptions(subscription_pb2.ListSubscriptionsRequest(),
                                          timeout=10)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            return {}
        raise
    return {s.name: s for s in response.subscriptions}


def _sub_fields(s: subscription_pb2.NodeSubscription | None) -> dict[str, Any]:
    s = s or subscription_pb2.NodeSubscription()
    connected = s.connected
    return {"replica": s.replica if connected else "",
            "connected_since": s.connected_since if connected else "",
            "acked_revision": s.acked_revision, "lag_revisions": s.lag_revisions,
            "resumes": s.resumes, "snapshots": s.snapshots}
