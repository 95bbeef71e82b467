"""`bulkhead policy apply|list|get|delete|resolve|trace|wait`.

Namespaced policies are addressed as `NAMESPACE/NAME`, clusterwide ones as `--clusterwide NAME`
(and shown as a bare NAME, like the engine's rule references). A bare NAME without the flag is
refused rather than guessed to be in `default`. JSON output is built here with fixed keys (see
the README's JSON table).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from bulkhead import httprules
from bulkhead.v1 import policy_pb2 as pb
from bulkhead.v1 import policy_pb2_grpc, subscription_pb2

from .. import argtypes
from ..manifest import read_manifest
from ..output import count, emit_json, output_flag, table, to_dict
from . import hostpolicy, policywait

CLUSTERWIDE = "-"
TIMEOUT = 60.0


def policy_ref(args: argparse.Namespace) -> pb.PolicyRef:
    """From `NAMESPACE/NAME`, or `NAME` with --clusterwide."""
    text: str = args.policy
    if args.clusterwide:
        if "/" in text:
            _usage(f"{text!r}: a clusterwide policy has no namespace; give its NAME")
        return pb.PolicyRef(kind="CiliumClusterwideNetworkPolicy", name=text)
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name or "/" in name:
        _usage(f"{text!r}: expected NAMESPACE/NAME, or --clusterwide NAME")
    return pb.PolicyRef(namespace="" if namespace == CLUSTERWIDE else namespace, name=name)


def _usage(message: str) -> NoReturn:
    print(f"bulkhead: {message}", file=sys.stderr)
    raise SystemExit(2)


def _address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("policy", metavar="NAMESPACE/NAME",
                        help="the policy (with --clusterwide: its NAME)")
    parser.add_argument("--clusterwide", action="store_true",
                        help="a CiliumClusterwideNetworkPolicy")


def labels(text: str) -> list[str]:
    found = [label.strip() for label in text.split(",") if label.strip()]
    if not found:
        raise argparse.ArgumentTypeError("expected comma-separated source:key=value labels")
    return found


def port_proto(text: str) -> tuple[int, str]:
    port, _, proto = text.partition("/")
    if not port.isascii() or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected PORT/PROTO, e.g. 80/TCP")
    proto = (proto or "TCP").upper()
    if proto == "ICMP":  # the port is the ICMP type, as icmps rules key it
        if not 0 <= int(port) <= 255:
            argtypes.bad_value("--dport", f"{port[:40]} is not an ICMP type (0 to 255)")
    elif not 1 <= int(port) <= 65535:
        argtypes.bad_value("--dport", f"{port[:40]} is out of range (1 to 65535)")
    return int(port), proto


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "policy", help="network policies (CiliumNetworkPolicy YAML)",
        description="Policies are addressed as NAMESPACE/NAME; clusterwide ones as "
                    "--clusterwide NAME.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    ap = verbs.add_parser("apply", help="validate and store every policy of a YAML file")
    ap.add_argument("-f", "--filename", required=True, help="YAML file ('-' for stdin)")
    ap.add_argument("--wait", action="store_true",
                    help="return once every node hosting an affected identity applied it")
    ap.add_argument("--timeout", type=argtypes.seconds("--timeout"),
                    default=30.0, help="--wait limit in seconds")
    output_flag(ap)
    ap.set_defaults(run=run_apply)
    ls = verbs.add_parser("list", help="stored policies")
    ls.add_argument("-n", "--namespace", default="", help="only this namespace")
    ls.add_argument("--clusterwide", action="store_true", help="only clusterwide policies")
    output_flag(ls)
    ls.set_defaults(run=run_list)
    get = verbs.add_parser("get", help="one policy as normalized YAML")
    _address(get)
    output_flag(get)
    get.set_defaults(run=run_get)
    rm = verbs.add_parser("delete", help="delete one policy")
    _address(rm)
    output_flag(rm)
    rm.set_defaults(run=run_delete)
    rs = verbs.add_parser("resolve", help="the policy entries of one identity, or the host "
                                          "policy of one node")
    subject = rs.add_mutually_exclusive_group(required=True)
    subject.add_argument("--identity", type=argtypes.uint32("--identity"))
    subject.add_argument("--node", help="the host policy (nodeSelector) of this node")
    output_flag(rs)
    rs.set_defaults(run=run_resolve)
    tr = verbs.add_parser("trace", help="would a connection be allowed, and by which rule")
    src = tr.add_mutually_exclusive_group(required=True)
    src.add_argument("--src", type=labels, help="source labels, comma-separated")
    src.add_argument("--src-node", help="the source is this node's host (host policies)")
    dst = tr.add_mutually_exclusive_group(required=True)
    dst.add_argument("--dst", type=labels, help="destination labels")
    dst.add_argument("--dst-node", help="the destination is this node's host")
    tr.add_argument("--dport", type=port_proto, required=True, metavar="PORT/PROTO",
                    help="destination port and protocol, e.g. 80/TCP; 8/ICMP is ICMP type 8")
    tr.add_argument("--http-method", default="", metavar="M",
                    help="trace this HTTP request (with --http-path) on the connection")
    tr.add_argument("--http-path", default="", metavar="P", help="the request's path (target)")
    tr.add_argument("--http-host", default="", metavar="H", help="the request's Host")
    tr.add_argument("--http-header", action="append", default=[], metavar="'N: v'",
                    help="a request header (repeatable)")
    output_flag(tr)
    tr.set_defaults(run=run_trace)
    policywait.add_wait_verb(verbs)


def _stub(ctx: Any) -> policy_pb2_grpc.PolicyServiceStub:
    return ctx.stub(policy_pb2_grpc.PolicyServiceStub)


def _name(namespace: str, name: str) -> str:
    """`NAMESPACE/NAME`; a clusterwide policy by its bare NAME."""
    return f"{namespace}/{name}" if namespace else name


def _info(info: pb.PolicyInfo) -> dict[str, Any]:
    return {"kind": info.kind, "namespace": info.namespace, "name": info.name,
            "revision": info.revision, "created_revision": info.created_revision,
            "rules": info.rules}


def _origin(origin: pb.RuleOrigin) -> dict[str, str]:
    return {"policy": _name(origin.namespace, origin.name) if origin.name else "",
            "kind": origin.kind, "rule": origin.rule}


def run_apply(ctx: Any) -> int:
    args = ctx.args
    text = read_manifest(args.filename)
    if text is None:
        return 1
    result = _stub(ctx).Apply(pb.ApplyPoliciesRequest(yaml=text), timeout=TIMEOUT)
    out: dict[str, Any] = {
        "revision": result.revision,
        "affected_identities": list(result.affected_identities),
        "policies": [{**_info(a.policy), "action": a.action} for a in result.policies],
    }
    waited = None
    if args.wait:
        if result.affected_identities:
            waited = policywait.wait_for(ctx, result.revision, list(result.affected_identities),
                                         args.timeout)
            out["wait"] = {"converged": waited.converged, "nodes": list(waited.nodes),
                           "pending": [p.name for p in waited.pending],
                           "covered": [c.name for c in waited.covered]}
        else:
            out["wait"] = {"converged": True, "nodes": [], "pending": [], "covered": []}
    if ctx.json:
        emit_json(out)
        return 0 if waited is None or waited.converged else 1
    for applied in result.policies:
        print(f"{applied.policy.kind.lower()} "
              f"{_name(applied.policy.namespace, applied.policy.name)} {applied.action}")
    print(f"revision {result.revision}; "
          f"{count(len(result.affected_identities), 'identity', 'identities')} affected")
    if waited is not None:
        return policywait.report(waited, result.revision)
    if args.wait:
        print("no identity affected: nothing to wait for")
    return 0


def run_list(ctx: Any) -> int:
    namespace = CLUSTERWIDE if ctx.args.clusterwide else ctx.args.namespace
    result = _stub(ctx).List(pb.ListPoliciesRequest(namespace=namespace), timeout=TIMEOUT)
    if ctx.json:
        emit_json([_info(p) for p in result.policies])
        return 0
    table(["POLICY", "KIND", "RULES", "REVISION"],
          [(_name(p.namespace, p.name), p.kind, p.rules, p.revision) for p in result.policies])
    return 0


def run_get(ctx: Any) -> int:
    info = _stub(ctx).Get(pb.GetPolicyRequest(policy=policy_ref(ctx.args)), timeout=TIMEOUT)
    if ctx.json:
        emit_json({**_info(info), "yaml": info.yaml})
    else:
        sys.stdout.write(info.yaml)
    return 0


def run_delete(ctx: Any) -> int:
    ref = policy_ref(ctx.args)
    result = _stub(ctx).Delete(pb.DeletePolicyRequest(policy=ref), timeout=TIMEOUT)
    name = _name(ref.namespace, ref.name)
    if ctx.json:
        emit_json({"deleted": name, "revision": result.revision,
                   "affected_identities": list(result.affected_identities),
                   "released_identities": list(result.released_identities)})
    else:
        print(f"policy {name} deleted (revision {result.revision}; "
              f"{count(len(result.affected_identities), 'identity', 'identities')} affected)")
    return 0


def run_resolve(ctx: Any) -> int:
    if ctx.args.node is not None:
        return hostpolicy.run_resolve_host(ctx, _origin, _ports)
    result = _stub(ctx).Resolve(pb.ResolvePolicyRequest(identity=ctx.args.identity),
                                timeout=TIMEOUT)
    entries = [{"direction": e.direction, "peer": e.peer, "protocol": e.protocol,
                "port_lo": e.port_lo, "port_hi": e.port_hi, "verdict": e.verdict,
                "origins": [_origin(o) for o in e.origins],
                "l7": subscription_pb2.PolicyEntry.L7.Name(e.l7),
                "http": [to_dict(r) for r in e.http], "peer_fqdn": e.peer_fqdn}
               for e in result.entries]
    if ctx.json:
        emit_json({"identity": result.identity, "labels": list(result.labels),
                   "ingress_enforced": result.ingress_enforced,
                   "egress_enforced": result.egress_enforced, "revision": result.revision,
                   "entries": entries, "dns_patterns": list(result.dns_patterns)})
        return 0
    print(f"identity {result.identity} ({','.join(result.labels)}): ingress "
          f"{'enforced' if result.ingress_enforced else 'not enforced'}, egress "
          f"{'enforced' if result.egress_enforced else 'not enforced'}")
    if result.dns_patterns:
        print(f"DNS queries answered only for: {', '.join(result.dns_patterns)} "
              "(rules.dns; others get REFUSED)")
    table(["DIRECTION", "VERDICT", "PEER", "PORTS", "HTTP", "FROM"],
          [(e["direction"], e["verdict"],
            f"{e['peer']} (fqdn:{e['peer_fqdn']})" if e["peer_fqdn"] else e["peer"] or "any",
            _ports(e),
            [str(httprules.from_proto(r)) for r in entry.http],
            [f"{o['policy']} {o['rule']}" for o in e["origins"]])
           for e, entry in zip(entries, result.entries, strict=True)])
    return 0


def _ports(entry: dict[str, Any]) -> str:
    lo, hi, proto = entry["port_lo"], entry["port_hi"], entry["protocol"]
    if (lo, hi) == (0, 0) and proto not in ("ICMP", "ICMPV6"):  # ICMP: one type, 0 included
        return f"*/{proto}"
    return f"{lo}/{proto}" if lo == hi else f"{lo}-{hi}/{proto}"


def _http_origin(item: pb.HttpRuleOrigin) -> dict[str, Any]:
    origin = _origin(item.origin)
    return {"policy": origin["policy"], "rule": f"{origin['rule']}.{item.item}",
            "http": to_dict(item.rule)}


def _side(side: pb.TraceSide) -> dict[str, Any]:
    """One side; `http_rules` (and `http_decided_by`) only when L7 rules decide its requests."""
    origin = _origin(side.decided_by) if side.HasField("decided_by") else {"policy": "",
                                                                           "rule": ""}
    enforcing = sorted({_origin(o)["policy"] for o in side.enforced_by})
    out: dict[str, Any] = {"verdict": side.verdict, "enforced": side.enforced,
                           "reason": side.reason, "policy": origin["policy"],
                           "rule": origin["rule"], "enforced_by": enforcing}
    if side.http_rules:
        out["http_rules"] = [_http_origin(i) for i in side.http_rules]
        out["http_decided_by"] = (_http_origin(side.http_decided_by)
                                  if side.HasField("http_decided_by") else None)
    return out


def _side_lines(name: str, side: pb.TraceSide) -> list[str]:
    if not side.http_rules:
        reason = (f"{_name(side.decided_by.namespace, side.decided_by.name)} "
                  f"{side.decided_by.rule}" if side.HasField("decided_by") else side.reason)
        enforcing = sorted({_origin(o)["policy"] for o in side.enforced_by})
        if not side.HasField("decided_by") and enforcing:
            # A default deny names what put the endpoint under enforcement in this direction.
            reason += f" (enforced by {', '.join(enforcing)})"
        return [f"  {name:<8} {side.verdict:<8} {reason}"]
    if side.HasField("http_decided_by"):
        decided = side.http_decided_by
        return [f"  {name:<8} {side.verdict:<8} {side.reason} "
                f"({httprules.from_proto(decided.rule)})"]
    lines = [f"  {name:<8} {side.verdict:<8} {side.reason}:"]
    lines += [f"      {_name(i.origin.namespace, i.origin.name)} {i.origin.rule}.{i.item}  "
              f"{httprules.from_proto(i.rule)}" for i in side.http_rules]
    return lines


def run_trace(ctx: Any) -> int:
    args = ctx.args
    port, proto = args.dport
    if args.src_node is not None or args.dst_node is not None:
        if args.http_method or args.http_path or args.http_host or args.http_header:
            print("bulkhead: --http-* cannot be used with --src-node/--dst-node (host policies "
                  "have no L7 rules)", file=sys.stderr)
            return 1
        result = hostpolicy.trace_host(ctx, port, proto)
    else:
        result = _stub(ctx).Trace(pb.TracePolicyRequest(
            src_labels=args.src, dst_labels=args.dst, dport=port, protocol=proto,
            http_method=args.http_method, http_path=args.http_path,
            http_host=args.http_host, http_headers=args.http_header), timeout=TIMEOUT)
    out = {"verdict": result.verdict, "egress": _side(result.egress),
           "ingress": _side(result.ingress), "src_labels": list(result.src_labels),
           "dst_labels": list(result.dst_labels)}
    if ctx.json:
        emit_json(out)
        return 0
    request = f" {args.http_method} {args.http_path}" if args.http_method else ""
    print(f"{result.verdict}: {','.join(result.src_labels)} -> {','.join(result.dst_labels)} "
          f"{port}/{proto}{request}")
    for name, side in (("egress", result.egress), ("ingress", result.ingress)):
        print("\n".join(_side_lines(name, side)))
    return 0
