"""The DNS benchmark's client, run inside a pod or node namespace (bench/dns.py).

`qps SERVER NAME SECONDS CONCURRENCY`: A queries for NAME kept CONCURRENCY in flight over UDP
for SECONDS; prints {"qps", "answered", "failed", "p50_ms", "p99_ms"}.
`first NAMES...`: for each name, one A query to SERVER, then TCP connects to the answered
address on port 80 (each with a short timeout, retried) until one succeeds; prints
{"answer_to_first_ms": [...], "query_ms": [...]} — the time from the answer to the first
connection the datapath let through (a SYN dropped there would cost a retry).
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import sys
import time

import dns.message
import dns.query
import dns.rcode


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


class _Blast(asyncio.DatagramProtocol):
    def __init__(self, wire: bytes, concurrency: int, deadline: float) -> None:
        self.wire = wire
        self.concurrency = concurrency
        self.deadline = deadline
        self.sent: dict[int, float] = {}
        self.latencies: list[float] = []
        self.failed = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        for _ in range(self.concurrency):
            self._send()

    def _send(self) -> None:
        if time.monotonic() >= self.deadline:
            if not self.sent and not self.done.done():
                self.done.set_result(None)
            return
        txid = random.randrange(1 << 16)
        while txid in self.sent:
            txid = random.randrange(1 << 16)
        self.sent[txid] = time.monotonic()
        assert self.transport is not None
        self.transport.sendto(struct.pack("!H", txid) + self.wire[2:])

    def datagram_received(self, data: bytes, addr: object) -> None:
        started = self.sent.pop(struct.unpack("!H", data[:2])[0], None)
        if started is None:
            return
        if data[3] & 0x0F:  # rcode
            self.failed += 1
        else:
            self.latencies.append(time.monotonic() - started)
        self._send()


async def qps(server: str, name: str, seconds: float, concurrency: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    wire = dns.message.make_query(name, "A").to_wire()
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: _Blast(wire, concurrency, deadline), remote_addr=(server, 53))
    try:
        await asyncio.wait_for(proto.done, seconds + 10)
    except TimeoutError:
        pass  # queries lost in flight
    elapsed = time.monotonic() - started
    transport.close()
    answered = len(proto.latencies)
    return {"qps": answered / elapsed, "answered": answered, "failed": proto.failed,
            "p50_ms": percentile(proto.latencies, 0.5) * 1e3,
            "p99_ms": percentile(proto.latencies, 0.99) * 1e3}


def first(server: str, names: list[str]) -> dict[str, list[float]]:
    answer_to_first: list[float] = []
    query_ms: list[float] = []
    for name in names:
        t0 = time.perf_counter()
        reply = dns.query.udp(dns.message.make_query(name, "A"), server, timeout=5)
        t1 = time.perf_counter()
        if reply.rcode() != dns.rcode.NOERROR or not reply.answer:
            raise SystemExit(f"{name}: {dns.rcode.to_text(reply.rcode())}")
        ip = next(iter(reply.answer[0])).address
        while True:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(0.05)
            try:
                sock.connect((ip, 80))
                break
            except OSError:
                if time.perf_counter() - t1 > 10:
                    raise SystemExit(f"{name}: {ip} never became reachable") from None
            finally:
                sock.close()
        t2 = time.perf_counter()
        query_ms.append((t1 - t0) * 1e3)
        answer_to_first.append((t2 - t1) * 1e3)
    return {"answer_to_first_ms": answer_to_first, "query_ms": query_ms}


def main() -> None:
    mode, server = sys.argv[1], sys.argv[2]
    if mode == "qps":
        result: object = asyncio.run(qps(server, sys.argv[3], float(sys.argv[4]),
                                         int(sys.argv[5])))
    else:
        result = first(server, sys.argv[3:])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
