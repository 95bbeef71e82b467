"""The lab world's DNS server: authoritative for a few names outside the cluster
(`api.world.test`, ...), over UDP and TCP, answered with dnspython (already the agent's DNS
library).  A UDP answer larger than the query allows (512 bytes, or its EDNS size) is sent
truncated (TC), so the client asks again over TCP, as real servers do: `many.world.test`'s
many addresses (world.py) come whole only over TCP.

`serve(records, ttl, host, port)` runs in a thread (tests); `python -m integration.lab.worlddns
--record NAME=IP ... --listen IP:PORT --ttl N` runs it as the world namespace's server and
prints `ready` once it answers.  Names with records get their A records; every other name
gets NXDOMAIN.  The TTL is the same for every answer and can be changed while it runs by
writing a number into the `--ttl-file` (the TTL-expiry test shortens it).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import struct
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

UDP_MAX = 512
TCP_MAX = 65535


def reply_to(wire: bytes, records: Mapping[str, Sequence[str]], ttl: int,
             max_size: int = TCP_MAX) -> bytes | None:
    """The answer, truncated (TC, no records) when larger than ``max_size`` or the query's
    EDNS size, whichever is larger."""
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return None
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.AA
    if len(query.question) != 1:
        reply.set_rcode(dns.rcode.FORMERR)
        return reply.to_wire()
    question = query.question[0]
    name = question.name.to_text().lower()
    ips = records.get(name)
    if ips is None:
        reply.set_rcode(dns.rcode.NXDOMAIN)
    elif question.rdtype in (dns.rdatatype.A, dns.rdatatype.ANY):
        reply.answer.append(dns.rrset.from_text_list(question.name, ttl, "IN", "A", list(ips)))
    limit = max(max_size, query.payload) if query.edns >= 0 else max_size
    try:
        return reply.to_wire(max_size=limit)
    except dns.exception.TooBig:
        reply.answer.clear()
        reply.flags |= dns.flags.TC
        return reply.to_wire()


def _names(records: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    return {(n.lower() if n.endswith(".") else f"{n.lower()}."): list(ips)
            for n, ips in records.items()}


def serve(records: Mapping[str, Sequence[str]], ttl: Callable[[], int],
          sock: socket.socket) -> None:
    """Answers on a bound UDP socket until it is closed."""
    names = _names(records)
    while True:
        try:
            data, peer = sock.recvfrom(4096)
        except OSError:
            return
        out = reply_to(data, names, ttl(), UDP_MAX)
        if out is not None:
            sock.sendto(out, peer)


def _read(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _serve_connection(names: Mapping[str, Sequence[str]], ttl: Callable[[], int],
                      conn: socket.socket) -> None:
    """RFC 7766: length-prefixed queries until the client closes."""
    with conn:
        conn.settimeout(10)
        try:
            while (head := _read(conn, 2)) is not None:
                data = _read(conn, struct.unpack("!H", head)[0])
                out = None if data is None else reply_to(data, names, ttl())
                if out is None:
                    return
                conn.sendall(struct.pack("!H", len(out)) + out)
        except OSError:
            return


def serve_tcp(records: Mapping[str, Sequence[str]], ttl: Callable[[], int],
              sock: socket.socket) -> None:
    """Answers on a listening TCP socket (a thread per connection) until it is shut down."""
    names = _names(records)
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        threading.Thread(target=_serve_connection, args=(names, ttl, conn),
                         daemon=True).start()


def bind(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a listening TCP socket on one address and port (0: a free one)."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        udp.bind((host, port))
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((host, udp.getsockname()[1]))
        tcp.listen(64)
    except BaseException:
        udp.close()
        tcp.close()
        raise
    return udp, tcp


class Running:
    """A server started by `start`; `close()` stops it."""

    def __init__(self, udp: socket.socket, tcp: socket.socket) -> None:
        self.udp, self.tcp = udp, tcp

    def close(self) -> None:
        for sock in (self.udp, self.tcp):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked on it
            sock.close()


def start(records: Mapping[str, Sequence[str]], ttl: int = 30, host: str = "127.0.0.1",
          port: int = 0) -> tuple[Running, int]:
    """A server (UDP and TCP) in daemon threads; close the returned one to stop it."""
    udp, tcp = bind(host, port)
    for target, sock in ((serve, udp), (serve_tcp, tcp)):
        threading.Thread(target=target, args=(records, lambda: ttl, sock), daemon=True).start()
    return Running(udp, tcp), udp.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--record", action="append", default=[], metavar="NAME=IP[,IP]")
    parser.add_argument("--listen", default="0.0.0.0:53")
    parser.add_argument("--ttl", type=int, default=30)
    parser.add_argument("--ttl-file", type=Path)
    args = parser.parse_args()
    records = {}
    for item in args.record:
        name, _, ips = item.partition("=")
        records[name] = ips.split(",")
    host, _, port = args.listen.rpartition(":")
    udp, tcp = bind(host, int(port))

    def ttl() -> int:
        if args.ttl_file is not None:
            try:
                return int(args.ttl_file.read_text().strip())
            except (OSError, ValueError):
                pass
        return int(args.ttl)

    threading.Thread(target=serve_tcp, args=(records, ttl, tcp), daemon=True).start()
    print("ready", flush=True)
    sys.stdout.close()
    serve(records, ttl, udp)


if __name__ == "__main__":
    main()
