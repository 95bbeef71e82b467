"""Forwarding to the resolver the node uses (`--dns-upstream`), over UDP from the node's
network namespace (where the upstream is reachable; the agent itself runs in the host's).

One socket serves every query: each forwarded query gets a fresh message id, the reply is
matched back to its waiter by that id and given the client's id again, so concurrent queries
never mix up answers.  No answer within `timeout` (one retry) -> None (the proxy answers
SERVFAIL).
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from typing import cast

from nodeagent.datapath import netlink
from nodeagent.dns.listen import Listen
from nodeagent.dns.server import _setns


def _open(netns: str | None, upstream: Listen) -> socket.socket:
    result: list[socket.socket] = []
    error: list[BaseException] = []

    def make() -> None:
        try:
            if netns:
                _setns(netlink.ns_path(netns))
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
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

    async def start(self, netns: str | None) -> None:
        sock = _open(netns, self.upstream)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self._pending), sock=sock)
        self._transport = cast(asyncio.DatagramTransport, transport)

    async def query(self, wire: bytes) -> bytes | None:
        """The upstream's reply to `wire` (with the client's message id), or None."""
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
