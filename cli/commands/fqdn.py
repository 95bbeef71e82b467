"""`bulkhead fqdn cache list`: what a node's DNS proxy learnt for toFQDNs policies, like
`cilium fqdn cache list` (asked from the node's agent, as `bulkhead agent ...`)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

import grpc

from bulkhead.v1 import fqdn_pb2, fqdn_pb2_grpc

from ..output import emit_json, output_flag, table
from .agent import DEFAULT_SOCKET, NoAgent, _report, agent_channel, agent_target

TIMEOUT = 30.0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "fqdn", help="FQDN policy on a node: the names and addresses its DNS proxy learnt")
    p.add_argument("--agent-socket", metavar="PATH",
                   help="the agent's unix socket (default: $BULKHEAD_AGENT_SOCKET, else "
                        f"{DEFAULT_SOCKET.format(node='NODE')} with --node)")
    p.add_argument("--node", help="the node whose agent to ask")
    nouns = p.add_subparsers(dest="fqdn_noun", metavar="COMMAND", required=True)
    cache = nouns.add_parser("cache", help="the FQDN cache")
    verbs = cache.add_subparsers(dest="verb", metavar="VERB", required=True)
    ls = verbs.add_parser("list", help="like `cilium fqdn cache list`: endpoint, name, "
                                       "address, identity, TTL, expiry")
    ls.add_argument("--matchpattern", "-p", default="", metavar="PATTERN",
                    help="only names matching this pattern (toFQDNs matchPattern syntax)")
    output_flag(ls)
    ls.set_defaults(run=run_cache_list)


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_cache_list(ctx: Any) -> int:
    try:
        target, shown = agent_target(ctx)
    except NoAgent as exc:
        print(f"bulkhead: {exc}", file=sys.stderr)
        return exc.code
    with agent_channel(ctx, target) as channel:
        try:
            result = fqdn_pb2_grpc.FqdnServiceStub(channel).ListFqdnCache(
                fqdn_pb2.ListFqdnCacheRequest(match_pattern=ctx.args.matchpattern),
                timeout=TIMEOUT)
        except grpc.RpcError as exc:
            return _report(exc, shown)
    rows = [{"endpoint": e.endpoint, "endpoint_id": e.endpoint_id, "name": e.name, "ip": e.ip,
             "identity": e.identity, "ttl": e.ttl, "expires": _time(e.expires_at),
             "learnt": _time(e.learnt_at), "source": "lookup"} for e in result.entries]
    if ctx.json:
        emit_json({"node": result.node, "entries": rows})
        return 0
    table(["Endpoint", "Source", "FQDN", "TTL", "ExpirationTime", "IPs", "Identity"],
          [(r["endpoint"], r["source"], r["name"], r["ttl"], r["expires"], r["ip"],
            r["identity"]) for r in rows])
    return 0
