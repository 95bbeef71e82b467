"""`bulkhead ipcache list`."""

from __future__ import annotations

import argparse
from typing import Any

from bulkhead.v1 import admin_pb2, admin_pb2_grpc

from .. import argtypes
from ..output import emit_json, output_flag, table, to_dict
from ._paging import all_pages


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("ipcache", help="IP -> identity, tunnel endpoint")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    ls = verbs.add_parser("list", help="list ipcache entries")
    ls.add_argument("--node")
    ls.add_argument("--identity", type=argtypes.uint32("--identity"), default=0)
    output_flag(ls)
    ls.set_defaults(run=run_list)


def run_list(ctx: Any) -> int:
    entries = all_pages(ctx.stub(admin_pb2_grpc.AdminServiceStub).ListIPCache,
                        admin_pb2.ListIPCacheRequest(node=ctx.args.node or "",
                                                     identity=ctx.args.identity), "entries")
    if ctx.json:
        emit_json([to_dict(e) for e in entries])
        return 0
    table(["PREFIX", "IDENTITY", "NODE", "TUNNEL ENDPOINT", "CLUSTER"],
          [(e.prefix, e.identity, e.node, f"{e.tunnel.ip}:{e.tunnel.port}", e.cluster)
           for e in entries])
    return 0
