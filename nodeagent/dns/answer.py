"""Name -> records for the cluster zone, from the services the agent already holds.

Pure logic, no sockets: `respond(wire, services)` takes a query as it came off the wire and
returns the reply's bytes.  Answers come from `ReceivedState.services` in memory (a dict
lookup per query), so a query costs no control-plane round trip and DNS follows the
subscription: a service applied or deleted is answered that way as soon as the agent has it.

What is answered (as CoreDNS' kubernetes plugin does for these names):
- ``NAME.NS.svc.cluster.local`` A -> the ClusterIP; a headless service -> its backends' IPs
  (deduplicated, sorted).  Other types (AAAA, ...) for a known name -> NOERROR, no answer.
- ``cluster.local``, ``svc.cluster.local`` and ``NS.svc.cluster.local`` of a namespace with a
  service exist but hold no records -> NOERROR, no answer.
- every other name -> NXDOMAIN (nothing is forwarded: the agent is not a recursive resolver).
  ``NAME.NS`` and ``NAME`` resolve through the pod's search path
  (``NS.svc.cluster.local svc.cluster.local cluster.local``), as in Kubernetes.
Negative answers carry the zone's SOA so resolvers cache them briefly.
"""

from __future__ import annotations

from collections.abc import Mapping

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from bulkhead.v1 import types_pb2

ZONE = dns.name.from_text("cluster.local.")
SVC = dns.name.from_text("svc", origin=ZONE)
TTL = 5
"""Seconds a resolver may keep an answer (CoreDNS' kubernetes plugin default)."""
UDP_MAX = 512
"""A plain-DNS UDP reply's limit; EDNS queries state their own."""
TCP_MAX = 65535
"""A reply's limit over TCP (RFC 7766): the limit the TCP listeners pass, which tells the DNS
proxy the query came over TCP (and is forwarded over TCP)."""
SOA = dns.rrset.from_text(ZONE, TTL, "IN", "SOA",
                          f"ns.dns.{ZONE} hostmaster.{ZONE} 1 7200 1800 86400 {TTL}")


def lookup(name: dns.name.Name,
           services: Mapping[str, types_pb2.Service]) -> list[str] | None:
    """The A addresses of ``name``; [] for a name that exists without addresses; None for a
    name that does not exist."""
    if not name.is_subdomain(ZONE):
        return None
    labels = [label.decode("ascii", "replace").lower()
              for label in name.relativize(ZONE).labels]
    # relativize() keeps the labels in wire order: NAME, NS, "svc".
    if labels in ([], ["svc"]):
        return []
    if len(labels) == 2 and labels[1] == "svc":
        prefix = f"{labels[0]}/"
        return [] if any(key.startswith(prefix) for key in services) else None
    if len(labels) != 3 or labels[2] != "svc":
        return None
    service = services.get(f"{labels[1]}/{labels[0]}")
    if service is None:
        return None
    if service.headless:
        return sorted({b.ip for b in service.backends if b.ip},
                      key=lambda ip: tuple(int(part) for part in ip.split(".")))
    return [service.cluster_ip] if service.cluster_ip else []


def answer(query: dns.message.Message,
           services: Mapping[str, types_pb2.Service]) -> dns.message.Message:
    """The reply to a parsed query."""
    reply = dns.message.make_response(query, recursion_available=False)
    if query.opcode() != dns.opcode.QUERY:
        reply.set_rcode(dns.rcode.NOTIMP)
        return reply
    if len(query.question) != 1:
        reply.set_rcode(dns.rcode.FORMERR)
        return reply
    question = query.question[0]
    if question.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY):
        reply.set_rcode(dns.rcode.NXDOMAIN)
        return reply
    found = lookup(question.name, services)
    if question.name.is_subdomain(ZONE):
        reply.flags |= dns.flags.AA
    if found is None:
        reply.set_rcode(dns.rcode.NXDOMAIN)
    elif found and question.rdtype in (dns.rdatatype.A, dns.rdatatype.ANY):
        reply.answer.append(dns.rrset.from_text_list(question.name, TTL, "IN", "A", found))
        return reply
    if question.name.is_subdomain(ZONE):
        reply.authority.append(SOA)
    return reply


def respond(wire: bytes, services: Mapping[str, types_pb2.Service],
            max_size: int = UDP_MAX) -> bytes | None:
    """The reply's bytes to a query's, or None for bytes that are not a DNS query (dropped,
    as a server does when it cannot even read the header).  A reply larger than the
    client accepts (``max_size``, or the query's EDNS payload size) is sent truncated (TC)
    so the client retries over TCP."""
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return _formerr(wire)
    if query.flags & dns.flags.QR:
        return None
    reply = answer(query, services)
    limit = max(max_size, query.payload) if query.edns >= 0 else max_size
    try:
        return reply.to_wire(max_size=limit)
    except dns.exception.TooBig:
        reply.answer.clear()
        reply.authority.clear()
        reply.flags |= dns.flags.TC
        return reply.to_wire(max_size=limit)


def _formerr(wire: bytes) -> bytes | None:
    """FORMERR echoing the query's id, when at least a header came in."""
    if len(wire) < 12 or wire[2] & 0x80:
        return None
    reply = dns.message.Message(id=int.from_bytes(wire[:2], "big"))
    reply.flags = dns.flags.QR
    reply.set_rcode(dns.rcode.FORMERR)
    return reply.to_wire()
