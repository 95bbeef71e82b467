"""`bulkhead observe`: flows across the cluster, like `hubble observe`."""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from bulkhead import flowfilter
from bulkhead.v1 import flow_pb2, observer_pb2_grpc

from .. import argtypes
from ..output import emit_json_line, output_flag

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "observe", help="flows (policy verdicts) across the cluster")
    p.add_argument("--last", type=argtypes.uint32("--last"),
                   default=20, help="the newest N flows (default 20)")
    p.add_argument("--follow", "-f", action="store_true", help="then stream new flows")
    p.add_argument("--from-label", action="append", default=[], metavar="LABEL")
    p.add_argument("--to-label", action="append", default=[], metavar="LABEL")
    p.add_argument("--from-pod", default="", metavar="[NS/]POD")
    p.add_argument("--to-pod", default="", metavar="[NS/]POD")
    p.add_argument("--to-service", default="", metavar="[NS/]SERVICE",
                   help="flows of connections sent to that service's ClusterIP")
    p.add_argument("--from-ip", type=argtypes.ip_address("--from-ip"), default="")
    p.add_argument("--to-ip", type=argtypes.ip_address("--to-ip"), default="")
    p.add_argument("--from-identity", type=argtypes.uint32("--from-identity"), default=0)
    p.add_argument("--to-identity", type=argtypes.uint32("--to-identity"), default=0)
    p.add_argument("--verdict", choices=["FORWARDED", "DROPPED"], type=str.upper)
    p.add_argument("--port", type=argtypes.port("--port"),
                   default=0, help="source or destination port")
    p.add_argument("--protocol", default="", type=str.upper, help="TCP, UDP, ICMP, SCTP")
    p.add_argument("--node", default="")
    p.add_argument("--since", default="", help="a duration (30s, 5m, 2h) or an RFC 3339 time")
    add_l7_flags(p)
    p.add_argument("--print-node-name", action="store_true",
                   help="show which node's datapath saw each flow (a cross-node connection "
                        "is seen twice: egress on the source node, ingress on the destination)")
    output_flag(p)
    p.set_defaults(run=run)


def add_l7_flags(p: argparse.ArgumentParser) -> None:
    """The L7 filters, shared with `bulkhead agent flows`."""
    p.add_argument("--type", dest="flow_type", choices=flowfilter.FLOW_TYPES, type=str.lower,
                   help="l7: requests and responses of the L7 and DNS proxies; http: those "
                        "of the HTTP proxy; dns: DNS queries and answers of the DNS proxy; "
                        "l3-l4: datapath verdicts")
    p.add_argument("--http-method", default="", metavar="METHOD", help="L7 flows of that method")
    p.add_argument("--http-path", default="", metavar="REGEX",
                   help="L7 flows whose URL path matches (searched, like Hubble)")
    p.add_argument("--http-status", default="", metavar="CODE",
                   help="L7 flows with that status: a code (403) or a class (4+, 5+)")
    p.add_argument("--print-http-headers", action="store_true",
                   help="show the HTTP headers of L7 flows (never credentials' values)")


def l7_filter(a: argparse.Namespace) -> flow_pb2.FlowFilter:
    """The FlowFilter fields of the L7 flags, checked (a bad one exits naming its flag)."""
    if a.http_path and (why := flowfilter.check_http_path(a.http_path)):
        argtypes.bad_value("--http-path", f"not a regular expression ({why})")
    if a.http_status and not flowfilter.check_http_status(a.http_status):
        argtypes.bad_value("--http-status", f"expected a code like 403 or a class like 4+, "
                                            f"got {a.http_status[:20]!r}")
    return flow_pb2.FlowFilter(type=a.flow_type or "", http_method=a.http_method,
                               http_path=a.http_path, http_status=a.http_status)


def since_ns(value: str, now: float | None = None) -> int:
    if not value:
        return 0
    match = _DURATION.match(value)
    if match:
        start = (now or time.time()) - float(match.group(1)) * _UNITS[match.group(2)]
        if start < 0:
            argtypes.bad_value("--since", f"{value[:40]} ago is before 1970")
        return int(start * 1e9)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        argtypes.bad_value("--since", f"expected a duration like 5m or an RFC 3339 time, "
                                      f"got {value[:40]!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not 0 <= moment.timestamp() < 2**63 / 1e9:
        argtypes.bad_value("--since", f"{value[:40]!r} is out of range")
    return int(moment.timestamp() * 1e9)


def _peer(peer: flow_pb2.FlowPeer, service: flow_pb2.FlowService | None = None) -> str:
    """As Hubble names a host: the pod, else the service (a ClusterIP without a backend),
    else the IP (a node's own address with the node's name: `192.0.2.1 (node n1)`)."""
    if peer.pod:
        name = f"{peer.namespace}/{peer.pod}"
    elif service is not None:
        name = f"{service.namespace}/{service.name}"
    else:
        name = peer.ip
    port = f":{peer.port}" if peer.port else ""
    node = f" (node {peer.node_name})" if peer.node_name and not peer.pod else ""
    return f"{name}{port}{node} (ID:{peer.identity})"


def _l7_summary(flow: flow_pb2.Flow, headers: bool) -> str:
    """Hubble's words: `http-request DROPPED (HTTP/1.1 PUT http://h/p)`, `http-response
    FORWARDED (HTTP/1.1 200 2ms (POST http://h/p))`; DNS as Hubble prints it:
    `dns-request proxy FORWARDED (DNS Query api.world.test. A)`, `dns-response proxy FORWARDED
    (DNS Answer "192.0.2.201" TTL: 30 (Proxy api.world.test. A))`."""
    l7, http = flow.l7, flow.l7.http
    if l7.HasField("dns"):
        return _dns_summary(flow)
    if l7.type == "RESPONSE":
        ms = l7.latency_ns // 1_000_000
        text = (f"http-response {flow.verdict} ({http.protocol} {http.code} {ms}ms "
                f"({http.method} {http.url}))")
    elif http.method:
        text = f"http-request {flow.verdict} ({http.protocol} {http.method} {http.url})"
    else:
        text = f"http-request {flow.verdict} ({flow.drop_reason})"
    if headers and http.headers:
        text += " " + " ".join(f"{h.key}:{h.value}" for h in http.headers)
    return text


def _dns_summary(flow: flow_pb2.Flow) -> str:
    dns = flow.l7.dns
    qtypes = ",".join(dns.qtypes)
    if flow.l7.type == "REQUEST":
        return f"dns-request proxy {flow.verdict} (DNS Query {dns.query} {qtypes})"
    answer = ",".join([*dns.ips, *dns.cnames])
    rcode = "" if dns.rcode == "NOERROR" else f" RCode: {dns.rcode}"
    return (f"dns-response proxy {flow.verdict} (DNS Answer \"{answer}\" TTL: {dns.ttl}"
            f"{rcode} (Proxy {dns.query} {qtypes}))")


def line(flow: flow_pb2.Flow, node_name: bool = False, headers: bool = False) -> str:
    """One flow in the style of `hubble observe`."""
    moment = datetime.fromtimestamp(flow.time_ns / 1e9).astimezone()
    stamp = moment.strftime("%b %d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    if node_name:
        stamp += f" [{flow.node}]"
    if flow.type == "L7":
        return (f"{stamp}: {_peer(flow.source)} -> {_peer(flow.destination)} "
                f"{_l7_summary(flow, headers)}")
    # Hubble's meaning: L3-L4 when a rule decided, none when no policy did (default allow,
    # default deny), as `policy trace` says; then the direction, as Hubble's INGRESS/EGRESS.
    kind = f"policy-verdict:{policy_match(flow)} {flow.direction.upper() or '-'}"
    flags = f" ({flow.protocol} Flags: {', '.join(flow.tcp_flags)})" if flow.tcp_flags else (
        f" ({flow.protocol})" if flow.protocol else "")
    reason = f" {flow.drop_reason}" if flow.verdict == "DROPPED" and flow.drop_reason else ""
    if flow.mesh_sync_grace:   # nothing matched the remote identity yet: passed under grace
        reason = " (clustermesh sync grace)"
    service = flow.destination_service if flow.HasField("destination_service") else None
    return (f"{stamp}: {_peer(flow.source)} -> {_peer(flow.destination, service)} "
            f"{kind} {flow.verdict}{flags}{reason}")


def policy_match(flow: flow_pb2.Flow) -> str:
    """`L3-L4` when a policy rule decided the flow, else `none`."""
    return "L3-L4" if flow.policy_match else "none"


def _peer_json(peer: flow_pb2.FlowPeer) -> dict[str, Any]:
    return {"namespace": peer.namespace, "pod": peer.pod, "ip": peer.ip, "port": peer.port,
            "identity": peer.identity, "labels": list(peer.labels),
            "node_name": peer.node_name}


def _l7_json(flow: flow_pb2.Flow, headers: bool) -> dict[str, Any]:
    if flow.l7.HasField("dns"):
        dns = flow.l7.dns
        return {"type": flow.l7.type.lower(), "latency_ns": flow.l7.latency_ns,
                "dns": {"query": dns.query, "qtypes": list(dns.qtypes), "ips": list(dns.ips),
                        "ttl": dns.ttl, "rcode": dns.rcode, "cnames": list(dns.cnames)}}
    http = flow.l7.http
    out: dict[str, Any] = {"method": http.method, "url": http.url, "protocol": http.protocol,
                           "code": http.code}
    if headers:
        out["headers"] = [{"key": h.key, "value": h.value} for h in http.headers]
    return {"type": flow.l7.type.lower(), "latency_ns": flow.l7.latency_ns, "http": out}


def as_json(flow: flow_pb2.Flow, headers: bool = False) -> dict[str, Any]:
    moment = datetime.fromtimestamp(flow.time_ns // 1_000_000_000, UTC)
    l7 = {"l7": _l7_json(flow, headers)} if flow.type == "L7" else {}
    return {"time": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{flow.time_ns % 10**9:09d}Z",
            "type": flow.type or "L3_L4", **l7,
            "node": flow.node, "verdict": flow.verdict, "drop_reason": flow.drop_reason,
            "source": _peer_json(flow.source), "destination": _peer_json(flow.destination),
            "protocol": flow.protocol, "tcp_flags": list(flow.tcp_flags),
            "direction": flow.direction, "policy_match": policy_match(flow),
            "destination_service": (
                {"namespace": flow.destination_service.namespace,
                 "name": flow.destination_service.name}
                if flow.HasField("destination_service") else None)}


def build_request(a: argparse.Namespace) -> flow_pb2.GetFlowsRequest:
    request = flow_pb2.GetFlowsRequest(
        last=max(0, a.last), follow=a.follow,
        filter=flow_pb2.FlowFilter(
            from_labels=a.from_label, to_labels=a.to_label, from_pod=a.from_pod,
            to_pod=a.to_pod, to_service=a.to_service, from_ip=a.from_ip, to_ip=a.to_ip,
            from_identity=a.from_identity, to_identity=a.to_identity,
            verdict=a.verdict or "", port=a.port, protocol=a.protocol, node=a.node,
            since_ns=since_ns(a.since)))
    request.filter.MergeFrom(l7_filter(a))
    return request


def run(ctx: Any) -> int:
    request = build_request(ctx.args)
    stub = ctx.stub(observer_pb2_grpc.ObserverServiceStub)
    for flow in stub.GetFlows(request, timeout=None if request.follow else 30):
        headers = ctx.args.print_http_headers
        if ctx.json:
            emit_json_line(as_json(flow, headers))
            continue
        sys.stdout.write(line(flow, ctx.args.print_node_name, headers) + "\n")
        sys.stdout.flush()
    return 0
