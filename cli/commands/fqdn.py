"""`bulkhead fqdn cache list`: what a node's DNS proxy learnt for toFQDNs policies, like
`cilium fqdn cache list` (asked from the node's agent, as `bulkhead agent ...`)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from bulkhead.v1 import fqdn_pb2, fqdn_pb2_grpc

from ..output import emit_json, output_flag, table
from .agent import agent_flags, on_agent

TIMEOUT = 30.0


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "fqdn", help="FQDN policy on a node: the names and addresses its DNS proxy learnt")
    agent_flags(p)
    nouns = p.add_subparsers(dest="fqdn_noun", metavar="COMMAND", required=True)
    cache = nouns.add_parser("cache", help="the FQDN cache")
    verbs = cache.add_subparsers(dest="verb", metavar="VERB", required=True)
    ls = verbs.add_parser("list", help="like `cilium fqdn cache list`: endpoint, name, "
                                       "address, identity, TTL, expiry")
    ls.add_argument("--matchpattern", "-p", default="", metavar="PATTERN",
                    help="only names matching this pattern (toFQDNs matchPattern syntax)")
    output_flag(ls)
    ls.set_defaults(run=on_agent(fqdn_pb2_grpc.FqdnServiceStub, cache_list))


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cache_list(ctx: Any, stub: fqdn_pb2_grpc.FqdnServiceStub) -> int:
    result = stub.ListFqdnCache(
        fqdn_pb2.ListFqdnCacheRequest(match_pattern=ctx.args.matchpattern), timeout=TIMEOUT)
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
