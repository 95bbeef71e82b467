"""`bulkhead node list`."""

from __future__ import annotations

import argparse
from typing import Any

import grpc

from bulkhead.v1 import admin_pb2, admin_pb2_grpc, subscription_pb2, subscription_pb2_grpc

from ..output import emit_json, output_flag, table, to_dict
from ._paging import all_pages


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("node", help="nodes and tunnel endpoints")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    ls = verbs.add_parser("list", help="list registered nodes")
    output_flag(ls)
    ls.set_defaults(run=run_list)


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
                     s["resumes"], s["snapshots"]))
    table(["NAME", "NODE ID", "UNDERLAY IP", "POD CIDR", "TUNNEL ENDPOINT", "REPLICA",
           "CONNECTED SINCE", "ACKED REV", "LAG", "RESUMES", "SNAPSHOTS"], rows)
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
