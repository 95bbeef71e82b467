"""The lab world's DNS server: authoritative for a few names outside the cluster
(`api.world.test`, ...), over UDP, answered with dnspython (already the agent's DNS library).

`serve(records, ttl, host, port)` runs in a thread (tests); `python -m integration.lab.worlddns
--record NAME=IP ... --listen IP:PORT --ttl N` runs it as the world namespace's server and
prints `ready` once it answers.  Names with records get their A records; every other name
gets NXDOMAIN.  The TTL is the same for every answer and can be changed while it runs by
writing a number into the `--ttl-file` (the TTL-expiry test shortens it).
"""

from __future__ import annotations

import argparse
import socket
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


def reply_to(wire: bytes, records: Mapping[str, Sequence[str]], ttl: int) -> bytes | None:
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
    return reply.to_wire()


def serve(records: Mapping[str, Sequence[str]], ttl: Callable[[], int],
          sock: socket.socket) -> None:
    """Answers on a bound UDP socket until it is closed."""
    names = {(n.lower() if n.endswith(".") else f"{n.lower()}."): list(ips)
             for n, ips in records.items()}
    while True:
        try:
            data, peer = sock.recvfrom(4096)
        except OSError:
            return
        out = reply_to(data, names, ttl())
        if out is not None:
            sock.sendto(out, peer)


def start(records: Mapping[str, Sequence[str]], ttl: int = 30, host: str = "127.0.0.1",
          port: int = 0) -> tuple[socket.socket, int]:
    """A server in a daemon thread; close the returned socket to stop it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    threading.Thread(target=serve, args=(records, lambda: ttl, sock), daemon=True).start()
    return sock, sock.getsockname()[1]


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
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, int(port)))

    def ttl() -> int:
        if args.ttl_file is not None:
            try:
                return int(args.ttl_file.read_text().strip())
            except (OSError, ValueError):
                pass
        return int(args.ttl)

    print("ready", flush=True)
    sys.stdout.close()
    serve(records, ttl, sock)


if __name__ == "__main__":
    main()
