"""`bulkhead identity list|get|lookup|allocate|release`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import grpc

from bulkhead.v1 import admin_pb2, admin_pb2_grpc, identity_pb2, identity_pb2_grpc

from .. import argtypes
from ..output import emit_json, output_flag, table, to_dict
from ._paging import all_pages


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("identity", help="security identities")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    ls = verbs.add_parser("list", help="list identities (reserved ones included)")
    ls.add_argument("--label", action="append", default=[],
                    help="only identities carrying this label (repeatable)")
    output_flag(ls)
    ls.set_defaults(run=run_list)
    get = verbs.add_parser("get", help="show one identity")
    get.add_argument("id", type=argtypes.uint32("ID"))
    output_flag(get)
    get.set_defaults(run=run_get)
    look = verbs.add_parser("lookup", help="show the identity of labels (never allocates)")
    look.add_argument("labels", nargs="+", metavar="LABEL", help="source:key=value")
    output_flag(look)
    look.set_defaults(run=run_lookup)
    alloc = verbs.add_parser("allocate", help="allocate (or reference) the identity of labels")
    alloc.add_argument("labels", nargs="+", metavar="LABEL", help="source:key=value")
    alloc.add_argument("--holder", default="admin", help="reference holder (default admin)")
    output_flag(alloc)
    alloc.set_defaults(run=run_allocate)
    rel = verbs.add_parser("release", help="drop one reference of the holder")
    rel.add_argument("id", type=argtypes.uint32("ID"))
    rel.add_argument("--holder", default="admin")
    output_flag(rel)
    rel.set_defaults(run=run_release)


def _show(ctx: Any, identities: list[Any]) -> None:
    if ctx.json:
        emit_json([to_dict(i) for i in identities])
        return
    table(["ID", "LABELS", "REFS"], [(i.id, list(i.labels), i.references) for i in identities])


def run_list(ctx: Any) -> int:
    stub = ctx.stub(admin_pb2_grpc.AdminServiceStub)
    items = all_pages(stub.ListIdentities,
                      admin_pb2.ListIdentitiesRequest(label_selector=ctx.args.label),
                      "identities")
    _show(ctx, items)
    return 0


def _show_one(ctx: Any, ident: Any) -> None:
    if ctx.json:
        emit_json(to_dict(ident))
    else:
        _show(ctx, [ident])


def run_get(ctx: Any) -> int:
    ident = ctx.stub(identity_pb2_grpc.IdentityServiceStub).Get(
        identity_pb2.GetIdentityRequest(id=ctx.args.id), timeout=10)
    _show_one(ctx, ident)
    return 0


def run_lookup(ctx: Any) -> int:
    # The unary Lookup, so that a bad label is named as the user typed it (labels[i]).
    try:
        ident = ctx.stub(identity_pb2_grpc.IdentityServiceStub).Lookup(
            identity_pb2.LookupIdentityRequest(labels=ctx.args.labels), timeout=10)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
        print(f"bulkhead: no identity has the labels {' '.join(ctx.args.labels)}",
              file=sys.stderr)
        return 1
    _show_one(ctx, ident)
    return 0


def run_allocate(ctx: Any) -> int:
    ident = ctx.stub(identity_pb2_grpc.IdentityServiceStub).Allocate(
        identity_pb2.AllocateIdentityRequest(labels=ctx.args.labels, holder=ctx.args.holder),
        timeout=30)
    if ctx.json:
        emit_json({"id": ident.id, "labels": list(ident.labels)})
    else:
        print(f"{ident.id}\t{','.join(ident.labels)}")
    return 0


def run_release(ctx: Any) -> int:
    response = ctx.stub(identity_pb2_grpc.IdentityServiceStub).Release(
        identity_pb2.ReleaseIdentityRequest(id=ctx.args.id, holder=ctx.args.holder), timeout=30)
    if ctx.json:
        emit_json({"id": ctx.args.id, "remaining_references": response.remaining_references})
    else:
        print(f"released identity {ctx.args.id} ({response.remaining_references} "
              f"references left)")
    return 0
