"""Forwarding to the resolver the node uses (`--dns-upstream`), or to the server a pod asked,
from the node's network namespace (where it is reachable; the agent itself runs in the host's).

UDP: one socket serves every query: each forwarded query gets a fresh message id, the reply
is matched back to its waiter by that id and given the client's id again, so concurrent
queries never mix up answers.  No answer within `timeout` (one retry) -> None (the proxy
answers SERVFAIL).
TCP (RFC 7766, `query_tcp`): one connection per query, so an answer larger than a datagram
arrives whole; the proxy uses it for a query that came over TCP, and to read the whole of a
UDP answer that came back truncated (TC).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from typing import cast

from nodeagent.datapath import netlink
from nodeagent.dns.listen import Listen
from nodeagent.dns.server import _setns


def _open(netns: str | None, upstream: Listen,
          kind: socket.SocketKind = socket.SOCK_DGRAM) -> socket.socket:
    """A UDP socket connected to ``upstream``, or a TCP socket to connect, in ``netns``."""
    result: list[socket.socket] = []
    error: list[BaseException] = []

    def make() -> None:
        try:
            if netns:
                _setns(netlink.ns_path(netns))
            sock = socket.socket(socket.AF_INET, kind)
            if kind == socket.SOCK_DGRAM:
                sock.connect((upstream.ip, upstream.port))
            sock.setblocking(False)
            result.append(sock)
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=make, name="dns-upstream-netns")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, pending: dict[int, asyncio.Future[bytes]]) -> None:
        self.pending = pending

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12:
            return
        waiter = self.pending.pop(struct.unpack("!H", data[:2])[0], None)
        if waiter is not None and not waiter.done():
            waiter.set_result(data)


class Upstream:
    def __init__(self, upstream: Listen, timeout: float = 2.0) -> None:
        self.upstream = upstream
        self.timeout = timeout
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._netns: str | None = None

    async def start(self, netns: str | None) -> None:
        self._netns = netns
        sock = _open(netns, self.upstream)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self._pending), sock=sock)
        self._transport = cast(asyncio.DatagramTransport, transport)

    async def query(self, wire: bytes) -> bytes | None:
        """The upstream's reply to `wire` over UDP (with the client's message id), or None."""
        if self._transport is None or len(wire) < 12:
            return None
        loop = asyncio.get_running_loop()
        for _ in range(2):
            txid = random.randrange(1 << 16)
            while txid in self._pending:
                txid = random.randrange(1 << 16)
            waiter: asyncio.Future[bytes] = loop.create_future()
            self._pending[txid] = waiter
            self._transport.sendto(struct.pack("!H", txid) + wire[2:])
            try:
                reply = await asyncio.wait_for(waiter, self.timeout)
            except TimeoutError:
                self._pending.pop(txid, None)
                continue
            return wire[:2] + reply[2:]
        return None

    async def query_tcp(self, wire: bytes) -> bytes | None:
        """One query on a fresh TCP connection from the node namespace (two-byte length, then
        the message); None when the server cannot be reached or does not answer in time."""
        if self._transport is None or len(wire) < 12:
            return None
        loop = asyncio.get_running_loop()
        try:
            sock = await asyncio.to_thread(_open, self._netns, self.upstream,
                                           socket.SOCK_STREAM)
        except OSError:
            return None
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeout):
                await loop.sock_connect(sock, (self.upstream.ip, self.upstream.port))
                reader, writer = await asyncio.open_connection(sock=sock)
                writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
                while True:
                    size = struct.unpack("!H", await reader.readexactly(2))[0]
                    reply = await reader.readexactly(size)
                    if reply[:2] == wire[:2]:  # the answer to this query (the id matches)
                        return reply
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            return None
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()
            else:
                sock.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        for waiter in self._pending.values():
            waiter.cancel()
        self._pending.clear()


class Upstreams:
    """One `Upstream` per server the pods' redirected queries were sent to (they are
    forwarded there, from the node namespace), opened on first use and kept."""

    def __init__(self, netns: str | None, timeout: float = 2.0) -> None:
        self.netns = netns
        self.timeout = timeout
        self._open: dict[Listen, Upstream] = {}
        self._lock = asyncio.Lock()

    async def get(self, server: Listen) -> Upstream:
        found = self._open.get(server)
        if found is not None:
            return found
        async with self._lock:
            found = self._open.get(server)
            if found is None:
                found = Upstream(server, self.timeout)
                await found.start(self.netns)
                self._open[server] = found
            return found

    def close(self) -> None:
        for upstream in self._open.values():
            upstream.close()
        self._open.clear()
