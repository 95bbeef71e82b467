"""`bulkhead endpoint list|create|delete`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bulkhead.v1 import admin_pb2, admin_pb2_grpc, endpoint_pb2, endpoint_pb2_grpc

from .. import argtypes
from ..output import emit_json, output_flag, table, to_dict
from ._paging import all_pages


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("endpoint", help="endpoints (workloads)")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    ls = verbs.add_parser("list", help="list endpoints")
    ls.add_argument("--node")
    ls.add_argument("--namespace", "-n")
    ls.add_argument("--identity", type=argtypes.uint32("--identity"), default=0)
    output_flag(ls)
    ls.set_defaults(run=run_list)
    create = verbs.add_parser("create", help="create an endpoint (identity, IP, ipcache entry)")
    create.add_argument("name")
    create.add_argument("--node", required=True)
    create.add_argument("--namespace", "-n", default="default")
    create.add_argument("--labels", required=True, help="comma-separated source:key=value")
    create.add_argument("--ip", default="", help="an address of the node's pod CIDR")
    output_flag(create)
    create.set_defaults(run=run_create)
    delete = verbs.add_parser("delete", help="delete an endpoint: NAMESPACE/NAME")
    delete.add_argument("ref", metavar="NAMESPACE/NAME")
    output_flag(delete)
    delete.set_defaults(run=run_delete)


# The column headers every endpoint and pod list shares (`cilium endpoint list`'s).
INGRESS = "POLICY (ingress)\nENFORCEMENT"
EGRESS = "POLICY (egress)\nENFORCEMENT"
LABELS = "LABELS (source:key[=value])"
IPV4 = "IPv4"


def enforcement(on: bool) -> str:
    return "Enabled" if on else "Disabled"


def _json(endpoint: Any) -> dict[str, Any]:
    return {**to_dict(endpoint), "labels": sorted(endpoint.labels)}


def _show(ctx: Any, endpoints: list[Any]) -> None:
    if ctx.json:
        emit_json([_json(e) for e in endpoints])
        return
    table(["ENDPOINT", "NODE", INGRESS, EGRESS, "IDENTITY", LABELS, IPV4],
          [(f"{e.namespace}/{e.name}", e.node, enforcement(e.ingress_enforced),
            enforcement(e.egress_enforced), e.identity, sorted(e.labels), e.ip)
           for e in endpoints])


def run_list(ctx: Any) -> int:
    a = ctx.args
    items = all_pages(ctx.stub(admin_pb2_grpc.AdminServiceStub).ListEndpoints,
                      admin_pb2.ListEndpointsRequest(node=a.node or "", namespace=a.namespace or "",
                                                     identity=a.identity), "endpoints")
    _show(ctx, items)
    return 0


def run_create(ctx: Any) -> int:
    a = ctx.args
    labels = [lab.strip() for lab in a.labels.split(",") if lab.strip()]
    endpoint = ctx.stub(endpoint_pb2_grpc.EndpointServiceStub).Create(
        endpoint_pb2.CreateEndpointRequest(node=a.node, namespace=a.namespace, name=a.name,
                                           labels=labels, ip=a.ip), timeout=30)
    if ctx.json:
        emit_json(_json(endpoint))
    else:
        _show(ctx, [endpoint])
    return 0


def run_delete(ctx: Any) -> int:
    namespace, slash, name = ctx.args.ref.partition("/")
    if not slash or not namespace or not name:
        print("bulkhead: endpoint delete takes NAMESPACE/NAME", file=sys.stderr)
        return 2
    ctx.stub(endpoint_pb2_grpc.EndpointServiceStub).Delete(
        endpoint_pb2.DeleteEndpointRequest(namespace=namespace, name=name), timeout=30)
    if ctx.json:
        emit_json({"deleted": f"{namespace}/{name}"})
    else:
        print(f"deleted endpoint {namespace}/{name}")
    return 0
