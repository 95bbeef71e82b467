"""`bulkhead service apply|list|get|delete`: Kubernetes v1 Services (ClusterIP, headless).

`list` has the shape of `cilium service list`: one row per frontend (ClusterIP:port/protocol,
the service's frontend id in the ID column) and its backends numbered on continuation lines.
JSON output is built here with fixed snake_case keys (see the README's JSON table).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from bulkhead.v1 import service_pb2 as pb
from bulkhead.v1 import service_pb2_grpc, types_pb2

from ..manifest import read_manifest
from ..output import emit_json, output_flag, table

TIMEOUT = 60.0


def _usage(message: str) -> NoReturn:
    print(f"bulkhead: {message}", file=sys.stderr)
    raise SystemExit(2)


def service_ref(text: str) -> pb.ServiceRef:
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name or "/" in name:
        _usage(f"{text!r}: expected NAMESPACE/NAME")
    return pb.ServiceRef(namespace=namespace, name=name)


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "service", help="services (Kubernetes v1 Service YAML: ClusterIP, headless)",
        description="Services are addressed as NAMESPACE/NAME.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    ap = verbs.add_parser("apply", help="validate and store every Service of a YAML file "
                                        "(other kinds are skipped)")
    ap.add_argument("-f", "--filename", required=True, help="YAML file ('-' for stdin)")
    output_flag(ap)
    ap.set_defaults(run=run_apply)
    ls = verbs.add_parser("list", help="services with their frontends and backends")
    ls.add_argument("-n", "--namespace", default="", help="only this namespace")
    output_flag(ls)
    ls.set_defaults(run=run_list)
    get = verbs.add_parser("get", help="one service with its backends")
    get.add_argument("service", metavar="NAMESPACE/NAME")
    output_flag(get)
    get.set_defaults(run=run_get)
    rm = verbs.add_parser("delete", help="delete one service (frees its ClusterIP)")
    rm.add_argument("service", metavar="NAMESPACE/NAME")
    output_flag(rm)
    rm.set_defaults(run=run_delete)


def _stub(ctx: Any) -> service_pb2_grpc.ServiceServiceStub:
    return ctx.stub(service_pb2_grpc.ServiceServiceStub)


def service_json(svc: types_pb2.Service) -> dict[str, Any]:
    return {
        "namespace": svc.namespace, "name": svc.name, "id": svc.id,
        "type": "Headless" if svc.headless else "ClusterIP",
        "cluster_ip": svc.cluster_ip, "headless": svc.headless,
        "session_affinity": "ClientIP" if svc.client_ip_affinity else "None",
        "selector": dict(sorted(svc.selector.items())),
        "ports": [{"name": p.name, "port": p.port, "protocol": p.protocol,
                   "target_port": p.target_port, "target_port_name": p.target_port_name}
                  for p in svc.ports],
        "backends": [{"ip": b.ip, "port": b.port, "protocol": b.protocol,
                      "port_name": b.port_name, "node": b.node, "endpoint": b.endpoint,
                      "cluster": b.cluster}
                     for b in svc.backends],
    }


def backend_state(b: types_pb2.ServiceBackend) -> str:
    """`active`; a global service's backend in another cluster says which."""
    return f"active, cluster {b.cluster}" if b.cluster else "active"


def frontend_rows(svc: types_pb2.Service) -> list[tuple[Any, ...]]:
    """One row per frontend: (ID, Frontend, Service Type, Backend lines, service)."""
    kind = "Headless" if svc.headless else "ClusterIP"
    ident = "-" if svc.headless else svc.id
    name = f"{svc.namespace}/{svc.name}"
    rows = []
    for port in svc.ports or [types_pb2.ServicePort()]:
        frontend = "None" if svc.headless else svc.cluster_ip
        if port.port:
            frontend += f":{port.port}/{port.protocol}"
        backends = [b for b in svc.backends if b.port_name == port.name
                    and b.protocol == port.protocol]
        if not svc.ports:   # headless without ports: the addresses alone
            backends = list(svc.backends)
        lines = [f"{i} => {b.ip}:{b.port}/{b.protocol} ({backend_state(b)})" if b.port
                 else f"{i} => {b.ip} ({backend_state(b)})" for i, b in enumerate(backends, 1)]
        rows.append((ident, frontend, kind, lines, name))
    return rows


def run_apply(ctx: Any) -> int:
    args = ctx.args
    text = read_manifest(args.filename)
    if text is None:
        return 1
    result = _stub(ctx).Apply(pb.ApplyServicesRequest(yaml=text), timeout=TIMEOUT)
    if ctx.json:
        emit_json({"revision": result.revision, "notes": list(result.notes),
                   "services": [{**service_json(a.service), "action": a.action}
                                for a in result.services]})
        return 0
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    for applied in result.services:
        svc = applied.service
        where = "headless" if svc.headless else f"{svc.cluster_ip}, id {svc.id}"
        print(f"service {svc.namespace}/{svc.name} {applied.action} ({where})")
    print(f"revision {result.revision}")
    return 0


def run_list(ctx: Any) -> int:
    result = _stub(ctx).List(pb.ListServicesRequest(namespace=ctx.args.namespace),
                             timeout=TIMEOUT)
    if ctx.json:
        emit_json([service_json(s) for s in result.services])
        return 0
    rows = [row for svc in result.services for row in frontend_rows(svc)]
    table(["ID", "Frontend", "Service Type", "Backend", "Service"],
          [(i, f, k, b or "", n) for i, f, k, b, n in rows])
    return 0


def run_get(ctx: Any) -> int:
    svc = _stub(ctx).Get(pb.GetServiceRequest(service=service_ref(ctx.args.service)),
                         timeout=TIMEOUT)
    if ctx.json:
        emit_json(service_json(svc))
        return 0
    affinity = "ClientIP" if svc.client_ip_affinity else "None"
    print(f"{'Name:':<18}{svc.namespace}/{svc.name}")
    print(f"{'Type:':<18}{'Headless' if svc.headless else 'ClusterIP'}")
    print(f"{'ClusterIP:':<18}{'None' if svc.headless else svc.cluster_ip}")
    print(f"{'ID:':<18}{'-' if svc.headless else svc.id}")
    print(f"{'Selector:':<18}"
          f"{','.join(f'{k}={v}' for k, v in sorted(svc.selector.items())) or '-'}")
    print(f"{'Session affinity:':<18}{affinity}")
    for port in svc.ports:
        target = port.target_port_name or str(port.target_port)
        label = f" ({port.name})" if port.name else ""
        print(f"{'Port:':<18}{port.port}/{port.protocol} -> {target}{label}")
    table_rows = [(b.endpoint, f"{b.ip}:{b.port}/{b.protocol}", b.port_name or "-", b.node)
                  for b in svc.backends]
    if table_rows:
        print()
        table(["BACKEND", "ADDRESS", "PORT NAME", "NODE"], table_rows)
    else:
        print(f"{'Backends:':<18}none")
    return 0


def run_delete(ctx: Any) -> int:
    ref = service_ref(ctx.args.service)
    result = _stub(ctx).Delete(pb.DeleteServiceRequest(service=ref), timeout=TIMEOUT)
    name = f"{ref.namespace}/{ref.name}"
    if ctx.json:
        emit_json({"deleted": name, "revision": result.revision})
    else:
        print(f"service {name} deleted (revision {result.revision})")
    return 0
