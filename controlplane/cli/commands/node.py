"""`bulkhead node list`."""

from __future__ import annotations

import argparse
from typing import Any

from bulkhead.v1 import admin_pb2, admin_pb2_grpc

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
    if ctx.json:
        emit_json([to_dict(n) for n in nodes])
        return 0
    table(["NAME", "NODE ID", "UNDERLAY IP", "POD CIDR", "TUNNEL ENDPOINT"],
          [(n.name, n.node_id, n.underlay_ip, n.pod_cidr, f"{n.tunnel.ip}:{n.tunnel.port}")
           for n in nodes])
    return 0
