"""The DNS proxy: the agent's DNS server extended for FQDN policy (Cilium's DNS proxy).

For every query of a pod of this node:
1. `rules.dns`: when the pod's identity has DNS patterns (the rules selecting it carry
   `toPorts[].rules.dns`), a query for a name matching none of them is answered REFUSED and
   goes nowhere, as in Cilium; a pod no DNS rule selects gets every query answered (today's
   behaviour).
2. Cluster names (`*.cluster.local`) are answered from the services held in memory
   (nodeagent.dns.answer); other names go to the upstream resolver the node uses
   (`--dns-upstream`; without one they get NXDOMAIN, as before).
3. The A records of an upstream answer are learnt (`learn`): their IPs get node-local
   identities, ipcache entries and the entries of matching `toFQDNs` selectors, all written
   to the maps BEFORE the answer is sent, so the pod's first packet is already allowed.
4. The query and the answer are recorded as DNS flows (`record`).

Queries the datapath redirects (a pod under `rules.dns` asking any server on port 53,
nodeagent.dns.transparent) arrive with the `server` the pod asked: they are checked and learnt
the same way, and forwarded to that server (`upstreams`), never answered locally, as Cilium's
DNS proxy forwards to the original destination.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from bulkhead import fqdnmatch, log
from bulkhead.v1 import types_pb2
from nodeagent.dns import wire as dnswire
from nodeagent.dns.answer import TCP_MAX, UDP_MAX, _formerr, answer
from nodeagent.dns.listen import Listen
from nodeagent.dns.upstream import Upstream, Upstreams

_log = log.get(__name__)


@dataclass(frozen=True)
class Client:
    """The local endpoint behind a query's source address."""

    endpoint: str
    """namespace/name"""
    endpoint_id: int
    patterns: tuple[str, ...]
    """canonical `rules.dns` patterns; () = no DNS rule selects it"""


Learn = Callable[[Client, str, list[str], int], Awaitable[None]]
Record = Callable[[dict[str, Any]], None]


def allowed(client: Client | None, name: str) -> bool:
    if client is None or not client.patterns:
        return True
    return any(fqdnmatch.matches(p, name) for p in client.patterns)


def _a_records(reply: dns.message.Message) -> tuple[list[str], list[str], int]:
    """(IPv4 addresses, CNAME targets, smallest TTL) of an answer section."""
    ips: list[str] = []
    cnames: list[str] = []
    ttl: int | None = None
    for rrset in reply.answer:
        ttl = rrset.ttl if ttl is None else min(ttl, rrset.ttl)
        for rdata in rrset:
            if rrset.rdtype == dns.rdatatype.A:
                ips.append(rdata.to_text())
            elif rrset.rdtype == dns.rdatatype.CNAME:
                cnames.append(rdata.to_text())
    return list(dict.fromkeys(ips)), cnames, ttl or 0


class DnsProxy:
    def __init__(self, listen: Listen, services: Callable[[], Mapping[str, types_pb2.Service]],
                 client_of: Callable[[str], Client | None], upstream: Upstream | None,
                 learn: Learn, record: Record | None = None,
                 upstreams: Upstreams | None = None) -> None:
        self.listen = listen
        self.upstreams = upstreams
        self.services = services
        self.client_of = client_of
        self.upstream = upstream
        self.learn = learn
        self.record = record
        self.stats = {"refused": 0, "forwarded": 0, "local": 0, "learnt": 0, "failed": 0}

    async def handle(self, wire: bytes, addr: tuple[str, int], max_size: int = UDP_MAX,
                     server: tuple[str, int] | None = None) -> bytes | None:
        """The reply to one query from ``addr``; ``server``: the address the pod sent it to,
        when the datapath redirected it here (None: sent to `listen`).  ``max_size`` TCP_MAX:
        the query came over TCP and is forwarded over TCP (RFC 7766)."""
        if server == (self.listen.ip, self.listen.port):
            server = None
        found = dnswire.question(wire)
        if found is None:  # not one plain question: dnspython's path (errors, FORMERR, ...)
            return self._unusual(wire, max_size)
        name, qtype_number, question_end = found
        qtype = dnswire.qtype_text(qtype_number)
        client = self.client_of(addr[0])
        started = time.time_ns()
        to = server or (self.listen.ip, self.listen.port)
        if not allowed(client, name):
            self.stats["refused"] += 1
            self._flow(addr, "request", "DROPPED", name, qtype, started, server=to)
            self._flow(addr, "response", "DROPPED", name, qtype, started, rcode="REFUSED",
                       server=to)
            return dnswire.refused(wire, question_end)
        self._flow(addr, "request", "FORWARDED", name, qtype, started, server=to)
        upstream = self.upstream
        if server is not None:
            upstream = (await self.upstreams.get(Listen(*server))
                        if self.upstreams is not None else None)
        elif (name == "cluster.local." or name.endswith(".cluster.local.")
              or self.upstream is None):
            self.stats["local"] += 1
            out = self._unusual(wire, max_size)
            if out is not None:
                self._flow_reply(addr, out, name, qtype, started)
            return out
        self.stats["forwarded"] += 1
        tcp = max_size >= TCP_MAX
        raw: bytes | None = None
        if upstream is not None:
            raw = await (upstream.query_tcp(wire) if tcp else upstream.query(wire))
        if raw is None:
            self.stats["failed"] += 1
            self._flow(addr, "response", "FORWARDED", name, qtype, started, rcode="SERVFAIL",
                       server=to)
            return dnswire.servfail(wire, question_end)
        full = raw
        if not tcp and dnswire.truncated(raw):
            # Asked again over TCP, so every address of the answer is learnt; the UDP client
            # still gets the truncated one and retries over TCP itself.
            assert upstream is not None
            full = await upstream.query_tcp(wire) or raw
        read = dnswire.answers(full)
        if read is None:
            self.stats["failed"] += 1
            return raw  # the client makes of it what it can; nothing is learnt
        rcode, ips, cnames, ttl = read
        if ips and rcode == "NOERROR" and client is not None:
            # Into the maps before the pod has the answer (its first packet must pass).
            try:
                await self.learn(client, name, ips, ttl)
                self.stats["learnt"] += 1
            except Exception as exc:  # the answer still goes out; connections are denied
                _log.error("learnt addresses not written", name=name, error=str(exc))
        self._flow(addr, "response", "FORWARDED", name, qtype, started, ips=ips, ttl=ttl,
                   rcode=rcode, cnames=cnames, server=to)
        return raw

    def _unusual(self, wire: bytes, max_size: int) -> bytes | None:
        """Answered from the cluster zone with dnspython, as the agent's DNS did before."""
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return _formerr(wire)
        if query.flags & dns.flags.QR:
            return None
        return self._local(query, max_size)

    def _local(self, query: dns.message.Message, max_size: int) -> bytes:
        reply = answer(query, self.services())
        limit = max(max_size, query.payload) if query.edns >= 0 else max_size
        try:
            return reply.to_wire(max_size=limit)
        except dns.exception.TooBig:
            reply.answer.clear()
            reply.authority.clear()
            reply.flags |= dns.flags.TC
            return reply.to_wire(max_size=limit)

    def _flow_reply(self, addr: tuple[str, int], out: bytes, name: str, qtype: str,
                    started: int) -> None:
        if self.record is None:
            return
        parsed = dns.message.from_wire(out)
        ips, cnames, ttl = _a_records(parsed)
        self._flow(addr, "response", "FORWARDED", name, qtype, started, ips=ips, ttl=ttl,
                   rcode=dns.rcode.to_text(parsed.rcode()), cnames=cnames)

    def _flow(self, addr: tuple[str, int], kind: str, verdict: str, name: str, qtype: str,
              started: int, *, ips: list[str] | None = None, ttl: int = 0,
              rcode: str = "", cnames: list[str] | None = None,
              server: tuple[str, int] | None = None) -> None:
        if self.record is None:
            return
        now = time.time_ns()
        self.record({"time_ns": now, "type": kind, "verdict": verdict,
                     "client": (addr[0], addr[1]),
                     "server": server or (self.listen.ip, self.listen.port),
                     "query": name, "qtypes": [qtype], "ips": ips or [], "ttl": ttl,
                     "rcode": rcode, "cnames": cnames or [],
                     "latency_ns": now - started if kind == "response" else 0})
