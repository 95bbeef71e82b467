"""Just enough of the DNS wire format for the proxy's hot path (one query in, one answer
out), without building dnspython objects: the question of a query, a REFUSED reply to it,
and the A records, CNAME targets, smallest TTL and rcode of an answer.  Anything unusual
(several questions, another opcode, compression in a question, truncated data) returns None
and the caller takes dnspython's path."""

from __future__ import annotations

import socket
import struct

import dns.rdatatype

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")


def qtype_text(qtype: int) -> str:
    if qtype in (1, 28):
        return "A" if qtype == 1 else "AAAA"
    return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(qtype))


def question(wire: bytes) -> tuple[str, int, int] | None:
    """(name lower case with trailing dot, qtype, end of the question) of a standard query
    with one question; None otherwise."""
    if len(wire) < 12 or wire[2] & 0xF8 or _HEADER.unpack_from(wire)[2] != 1:
        return None  # a response (QR), another opcode, or not exactly one question
    pos, labels = 12, []
    while True:
        if pos >= len(wire):
            return None
        n = wire[pos]
        if n == 0:
            pos += 1
            break
        if n & 0xC0 or pos + 1 + n > len(wire):
            return None
        labels.append(wire[pos + 1:pos + 1 + n])
        pos += 1 + n
    if pos + 4 > len(wire):
        return None
    name = b".".join(labels).decode("ascii", "replace").lower() + "." if labels else "."
    return name, int.from_bytes(wire[pos:pos + 2], "big"), pos + 4


def _reply(wire: bytes, question_end: int, rcode: int) -> bytes:
    flags = 0x8080 | ((wire[2] & 0x01) << 8) | rcode  # QR, RD as asked, RA
    return wire[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 0) + wire[12:question_end]


def refused(wire: bytes, question_end: int) -> bytes:
    """REFUSED to a query, echoing its id, RD flag and question."""
    return _reply(wire, question_end, 5)


def servfail(wire: bytes, question_end: int) -> bytes:
    return _reply(wire, question_end, 2)


def truncated(wire: bytes) -> bool:
    """Whether a reply has the TC flag (more than the transport could carry)."""
    return len(wire) > 2 and bool(wire[2] & 0x02)


def _skip_name(wire: bytes, pos: int) -> int:
    while True:
        n = wire[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + n


def _name(wire: bytes, pos: int) -> str:
    labels, hops = [], 0
    while True:
        n = wire[pos]
        if n == 0:
            break
        if n & 0xC0 == 0xC0:
            hops += 1
            if hops > 20:
                raise ValueError("compression loop")
            pos = ((n & 0x3F) << 8) | wire[pos + 1]
            continue
        labels.append(wire[pos + 1:pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    return ".".join(labels).lower() + "."


def answers(wire: bytes) -> tuple[str, list[str], list[str], int] | None:
    """(rcode, IPv4 addresses, CNAME targets, smallest TTL) of an answer; None when it
    cannot be read."""
    try:
        _, flags, qd, an, _, _ = _HEADER.unpack_from(wire)
        pos = 12
        for _ in range(qd):
            pos = _skip_name(wire, pos) + 4
        ips: list[str] = []
        cnames: list[str] = []
        ttl: int | None = None
        for _ in range(an):
            pos = _skip_name(wire, pos)
            rtype, _, rttl, length = _RR.unpack_from(wire, pos)
            pos += _RR.size
            if pos + length > len(wire):
                return None
            ttl = rttl if ttl is None else min(ttl, rttl)
            if rtype == 1 and length == 4:
                ip = socket.inet_ntoa(wire[pos:pos + 4])
                if ip not in ips:
                    ips.append(ip)
            elif rtype == 5:
                cnames.append(_name(wire, pos))
            pos += length
    except (IndexError, struct.error, ValueError):
        return None
    rcode = flags & 0x0F
    return RCODES.get(rcode, str(rcode)), ips, cnames, ttl or 0
