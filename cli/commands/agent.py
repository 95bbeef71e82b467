"""`bulkhead agent ...`: a node agent's local API (unix socket), like `cilium endpoint list`,
`cilium bpf ... list` and `hubble observe` against one node.

Talks to the agent: the socket is `--agent-socket PATH`, else `$BULKHEAD_AGENT_SOCKET`, else the
default path of `--node NAME`; when that socket is not here, the agent API address the node
registered with the control plane.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc

from bulkhead import tls
from bulkhead.defaults import DEFAULT_STATE_DIR
from bulkhead.rpcerror import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, cli_message
from bulkhead.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc, flow_pb2

from .. import argtypes
from ..connect import credentials
from ..dumpjson import row_json
from ..output import emit_json, emit_json_line, output_flag, table, to_dict
from . import observe
from .endpoint import EGRESS, INGRESS, IPV4, LABELS, enforcement

DEFAULT_SOCKET = "/run/bulkhead/agent-{node}.sock"
S = TypeVar("S")
TIMEOUT = 30.0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "agent", help="a node agent's local API: endpoints, BPF maps, flows, status")
    agent_flags(p)
    nouns = p.add_subparsers(dest="agent_noun", metavar="COMMAND", required=True)

    status = nouns.add_parser("status", help="the agent's state, like `cilium status`")
    output_flag(status)
    status.set_defaults(run=_wrap(run_status))

    endpoint = nouns.add_parser("endpoint", help="this node's endpoints")
    verbs = endpoint.add_subparsers(dest="verb", metavar="VERB", required=True)
    ls = verbs.add_parser("list", help="like `cilium endpoint list`")
    output_flag(ls)
    ls.set_defaults(run=_wrap(run_endpoint_list))

    bpf = nouns.add_parser("bpf", help="dump the BPF maps, like `cilium bpf ...`")
    maps = bpf.add_subparsers(dest="map", metavar="MAP", required=True)
    for name, helptext in (("endpoint", "local endpoints map"), ("ipcache", "IP -> identity"),
                           ("ct", "connection tracking"), ("tunnel", "tunnel endpoints"),
                           ("lb", "service frontends and backends")):
        m = maps.add_parser(name, help=helptext)
        mv = m.add_subparsers(dest="verb", metavar="VERB", required=True)
        lv = mv.add_parser("list", help=f"list the {helptext}")
        output_flag(lv)
        lv.set_defaults(run=_wrap(run_dump), dump="endpoints" if name == "endpoint" else name,
                        endpoint="")
    pol = maps.add_parser("policy", help="one endpoint's policy map entries")
    pv = pol.add_subparsers(dest="verb", metavar="VERB", required=True)
    get = pv.add_parser("get", help="entries of ENDPOINT (id or namespace/name)")
    get.add_argument("endpoint", metavar="ENDPOINT")
    output_flag(get)
    get.set_defaults(run=_wrap(run_dump), dump="policy")
    cnt = maps.add_parser("counters", help="forwarded/dropped counters per endpoint")
    cv = cnt.add_subparsers(dest="verb", metavar="VERB", required=True)
    cl = cv.add_parser("list", help="list counters")
    cl.add_argument("endpoint", metavar="ENDPOINT", nargs="?", default="")
    output_flag(cl)
    cl.set_defaults(run=_wrap(run_dump), dump="counters")

    flows = nouns.add_parser("flows", help="this node's flows, like `hubble observe`")
    flows.add_argument("--last", type=argtypes.uint32("--last"),
                       default=20, help="the newest N held (default 20)")
    flows.add_argument("--follow", "-f", action="store_true", help="then stream new ones")
    flows.add_argument("--verdict", choices=["FORWARDED", "DROPPED"])
    flows.add_argument("--from-identity", type=argtypes.uint32("--from-identity"), default=0)
    flows.add_argument("--to-identity", type=argtypes.uint32("--to-identity"), default=0)
    flows.add_argument("--port", type=argtypes.port("--port"), default=0)
    flows.add_argument("--to-service", default="", metavar="[NS/]SERVICE",
                       help="flows of connections sent to that service's ClusterIP")
    observe.add_l7_flags(flows)
    output_flag(flows)
    flows.set_defaults(run=_wrap(run_flows))


AGENTS_DIR = "agents"
"""Under the state dir: NODE.sock links to agent sockets kept elsewhere (the lab's)."""


def published_socket(args: argparse.Namespace) -> Path | None:
    """For `--node NAME` alone: the socket the lab linked as STATE_DIR/agents/NAME.sock."""
    if args.agent_socket or not args.node:
        return None
    link = DEFAULT_STATE_DIR / AGENTS_DIR / f"{args.node}.sock"
    return link if link.exists() else None


def socket_path(args: argparse.Namespace) -> str:
    if args.agent_socket:
        return str(args.agent_socket)
    if os.environ.get("BULKHEAD_AGENT_SOCKET") and not args.node:
        return os.environ["BULKHEAD_AGENT_SOCKET"]
    if args.node:
        return DEFAULT_SOCKET.format(node=args.node)
    return ""


class NoAgent(Exception):
    """Why no agent can be asked, with the exit code (README: 1 not found, 2 usage,
    3 unreachable)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def agent_target(ctx: Any) -> tuple[str, str]:
    """(gRPC target, what to call it in errors): the unix socket if there is one, else the
    agent API address the node registered with the control plane (so `--node` also works for
    agents elsewhere, and for lab agents whose sockets live in the lab's directory). Raises
    NoAgent when there is neither."""
    path = socket_path(ctx.args)
    if path and Path(path).exists():
        return f"unix:{path}", path
    linked = published_socket(ctx.args)
    if linked is not None:
        return f"unix:{linked}", str(linked)
    node = ctx.args.node
    if not node:
        if not path:
            raise NoAgent("agent commands need --agent-socket PATH, $BULKHEAD_AGENT_SOCKET or "
                          "--node NAME", EXIT_USAGE)
        raise NoAgent(f"no agent socket at {path} (is the agent running?)", EXIT_UNREACHABLE)
    try:
        nodes = ctx.stub(admin_pb2_grpc.AdminServiceStub).ListNodes(
            admin_pb2.ListNodesRequest(), timeout=TIMEOUT).nodes
    except grpc.RpcError as exc:
        message, code = cli_message(exc, f"the control plane at {ctx.address}")
        raise NoAgent(f"no agent socket at {path}, and {message}", code) from None
    found = next((n for n in nodes if n.name == node), None)
    if found is None:
        raise NoAgent(f"no node {node!r} in the cluster (`bulkhead node list` shows them)",
                      EXIT_FAILED)
    if not found.agent_address:
        raise NoAgent(f"no agent socket at {path}, and node {node!r} registered no agent "
                      f"address (is the agent running?)", EXIT_UNREACHABLE)
    return found.agent_address, f"{node}'s agent at {found.agent_address}"


def agent_flags(p: argparse.ArgumentParser) -> None:
    """How a command finds the agent it asks (`agent`, `fqdn`)."""
    p.add_argument("--agent-socket", metavar="PATH",
                   help="the agent's unix socket (default: $BULKHEAD_AGENT_SOCKET, else "
                        f"{DEFAULT_SOCKET.format(node='NODE')} with --node)")
    p.add_argument("--node", help="the node whose agent to ask (default socket path)")


def on_agent(stub: Callable[[grpc.Channel], S], fn: Callable[[Any, S], int]
             ) -> Callable[[Any], int]:
    """Connects to the agent, hands `fn` a `stub` of it and turns gRPC failures into one
    clear line and exit code."""

    def run(ctx: Any) -> int:
        try:
            target, shown = agent_target(ctx)
        except NoAgent as exc:
            print(f"bulkhead: {exc}", file=sys.stderr)
            return exc.code
        with agent_channel(ctx, target) as channel:
            try:
                return fn(ctx, stub(channel))
            except grpc.RpcError as exc:
                return _report(exc, shown)

    return run


def _wrap(fn: Callable[[Any, agent_pb2_grpc.AgentServiceStub], int]) -> Callable[[Any], int]:
    return on_agent(agent_pb2_grpc.AgentServiceStub, fn)


def agent_channel(ctx: Any, target: str) -> grpc.Channel:
    """The unix socket is plaintext (root-only); an agent's TCP API speaks mutual TLS with its
    node certificate (CN and SAN = the node name), so the CLI's credential is presented there
    (the agent answers only the control plane's, and says so) unless --insecure."""
    if target.startswith("unix:"):
        return grpc.insecure_channel(target)
    args = ctx.args
    material = credentials(args.tls_ca, args.tls_cert, args.tls_key, args.insecure)
    options = [("grpc.ssl_target_name_override", args.node)] if material and args.node else []
    return tls.channel(target, material, options=options)


def _report(exc: grpc.RpcError, path: str) -> int:
    message, code = cli_message(exc, f"the agent at {path}")
    print(f"bulkhead: {message}", file=sys.stderr)
    return code


def run_status(ctx: Any, stub: agent_pb2_grpc.AgentServiceStub) -> int:
    s = stub.AgentStatus(agent_pb2.AgentStatusRequest(), timeout=TIMEOUT)
    if ctx.json:
        emit_json(to_dict(s))
        return 0
    rows = [
        ("Node", f"{s.node} (underlay {s.underlay_ip}"
                 f"{', netns ' + s.netns if s.netns else ''})"),
        ("Datapath", s.datapath),
        ("Control plane", f"{s.controlplane}: "
                          f"{'Ok' if s.connected else 'DISCONNECTED'}, revision "
                          f"{s.applied_revision}"
                          f"{'' if not s.last_error else ' (last error: ' + s.last_error + ')'}"),
        ("Datapath sync", "Ok" if s.synced else "waiting for the first snapshot"),
        ("Endpoints", str(s.endpoints)),
        ("Flows", f"{s.flows_held}/{s.flows_max} held, {s.flows_seen} seen, boot id "
                  f"{s.boot_id}"),
    ]
    if s.HasField("proxy"):
        rows.append(("L7 proxy", _proxy_row(s.proxy)))
    if s.HasField("host_firewall"):
        rows.append(("Host firewall", _host_firewall_row(s.host_firewall)))
        rows.append(("Always allowed", ", ".join(s.host_firewall.always_allowed)))
    for key, value in rows:
        print(f"{key + ':':<16}{value}")
    print("BPF maps:")
    for name in sorted(s.map_max):
        used = s.map_entries.get(name)
        count = "-" if used is None else str(used)
        print(f"  {name:<12}{count:>8} / {s.map_max[name]}")
    return 0


def _host_firewall_row(h: Any) -> str:
    """Host policies on the underlay interface; what no host policy can block is the next
    row (`Always allowed`: the control plane, the tunnel, tracked replies)."""
    if not h.attached:
        return "not attached"
    enforced = [d for d, on in (("ingress", h.ingress_enforced), ("egress", h.egress_enforced))
                if on]
    state = f"{' and '.join(enforced)} enforced" if enforced else "no host policy selects " \
        "this node"
    error = f" (last error: {h.last_error})" if h.last_error else ""
    return f"{state}, {h.entries} entries, revision {h.revision}{error}"


def _proxy_row(p: agent_pb2.ProxyStatus) -> str:
    if not p.running:
        return f"DOWN (restarts {p.restarts}; redirected connections fail until it is back)"
    listeners = ", ".join(p.listeners) or "no listener yet"
    return (f"Ok, pid {p.pid}{' (adopted)' if p.adopted else ''}, listening on {listeners}, "
            f"{p.open_connections} open connections, requests {p.requests_allowed} allowed / "
            f"{p.requests_denied} denied, {p.rule_entries} rule entries, restarts {p.restarts}")


def run_endpoint_list(ctx: Any, stub: agent_pb2_grpc.AgentServiceStub) -> int:
    eps = stub.ListEndpoints(agent_pb2.ListAgentEndpointsRequest(), timeout=TIMEOUT).endpoints
    if ctx.json:
        emit_json([{**to_dict(e), "labels": sorted(e.labels)} for e in eps])
        return 0
    table(["ENDPOINT", INGRESS, EGRESS, "IDENTITY", LABELS, IPV4, "STATUS"],
          [(e.endpoint_id, enforcement(e.ingress_enforced), enforcement(e.egress_enforced),
            e.identity, [f"{e.namespace}/{e.name}", *sorted(e.labels)], e.ipv4, e.status)
           for e in eps])
    return 0


def run_dump(ctx: Any, stub: agent_pb2_grpc.AgentServiceStub) -> int:
    a = ctx.args
    got = stub.DumpMap(agent_pb2.DumpMapRequest(map=a.dump, endpoint=a.endpoint or ""),
                       timeout=TIMEOUT)
    if ctx.json:
        emit_json([row_json(list(got.columns), dict(r.fields)) for r in got.rows])
        return 0
    if not got.rows:
        print(f"No entries found ({a.dump} map, capacity {got.max_entries}).")
        return 0
    table(list(got.columns), [[r.fields.get(c, "") for c in got.columns] for r in got.rows])
    return 0


def run_flows(ctx: Any, stub: agent_pb2_grpc.AgentServiceStub) -> int:
    a = ctx.args
    request = flow_pb2.GetFlowsRequest(
        last=max(a.last, 0), follow=a.follow,
        filter=flow_pb2.FlowFilter(verdict=a.verdict or "", from_identity=a.from_identity,
                                   to_identity=a.to_identity, port=a.port,
                                   to_service=a.to_service))
    request.filter.MergeFrom(observe.l7_filter(a))
    headers = a.print_http_headers
    for flow in stub.GetFlows(request, timeout=None if a.follow else TIMEOUT):
        if ctx.json:
            emit_json_line(observe.as_json(flow, headers))
            continue
        sys.stdout.write(observe.line(flow, headers=headers) + "\n")
        sys.stdout.flush()
    return 0
