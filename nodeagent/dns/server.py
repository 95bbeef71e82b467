"""The agent's DNS server for the pods of its node: UDP and TCP on one address in the node's
network namespace, answered on the agent's asyncio loop from `ReceivedState.services`.

The agent itself runs in the host namespace (``--netns`` names the node's), so the sockets are
created on a short-lived thread that has entered the node namespace (setns affects only the
calling thread); a socket stays in the namespace it was created in, and asyncio serves it
from any thread.  The default address is the pods' gateway 169.254.1.1 (every pod already
routes to it), added as a /32 on the node namespace's loopback and entered in the ipcache as
the host identity so pod -> DNS traffic is known to the datapath (reserved:host).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import cast

from bulkhead import log
from bulkhead.v1 import types_pb2
from nodeagent.datapath import netlink
from nodeagent.dns.answer import TCP_MAX, UDP_MAX, respond
from nodeagent.dns.listen import Listen

_log = log.get(__name__)

CLONE_NEWNET = 0x40000000
TCP_IDLE = 10.0
"""Seconds a TCP client may stay silent before its connection is closed."""

async def serve_tcp_queries(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            answer: Callable[[bytes], Awaitable[bytes | None]]) -> None:
    """RFC 7766 framing (two-byte length, message; several queries per connection) for both
    TCP listeners, the DNS server's and the redirect's: `answer` None closes the connection."""
    try:
        while True:
            size = struct.unpack("!H", await asyncio.wait_for(
                reader.readexactly(2), TCP_IDLE))[0]
            data = await asyncio.wait_for(reader.readexactly(size), TCP_IDLE)
            reply = await answer(data)
            if reply is None:
                break
            writer.write(struct.pack("!H", len(reply)) + reply)
            await writer.drain()
    except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
        pass
    except Exception as exc:
        _log.warning("dns query failed", transport="tcp", error=repr(exc))
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


Services = Callable[[], Mapping[str, types_pb2.Service]]
Handler = Callable[[bytes, tuple[str, int], int], Awaitable[bytes | None]]
"""(query, client address, reply size limit) -> reply: the DNS proxy (nodeagent.dns.proxy)."""


def ensure_local_address(netns: str | None, ip: str) -> bool:
    """Makes ``ip`` an address of the namespace (a /32 on loopback) unless it already is one;
    True if it was added."""
    with netlink.open_ns(netns) as ipr:
        if ipr.get_addr(address=ip):
            return False
        lo = netlink.link_index(ipr, "lo")
        if lo is None:
            raise RuntimeError("no loopback device in the node namespace")
        ipr.link("set", index=lo, state="up")
        ipr.addr("add", index=lo, address=ip, prefixlen=32)
        return True


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def open_sockets(netns: str | None, listen: Listen) -> tuple[socket.socket, socket.socket]:
    """A bound UDP and a listening TCP socket in ``netns`` (None: this namespace)."""
    result: list[tuple[socket.socket, socket.socket]] = []
    error: list[BaseException] = []

    def make() -> None:
        try:
            if netns:
                _setns(netlink.ns_path(netns))
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                udp.bind((listen.ip, listen.port))
                tcp.bind((listen.ip, listen.port))
                tcp.listen(64)
            except BaseException:
                udp.close()
                tcp.close()
                raise
            udp.setblocking(False)
            tcp.setblocking(False)
            result.append((udp, tcp))
        except BaseException as exc:
            error.append(exc)

    # A fresh thread, so the setns never touches a thread that does anything else; it ends
    # right after (the sockets keep their namespace).
    thread = threading.Thread(target=make, name="dns-netns")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, services: Services, handler: Handler | None = None) -> None:
        self.services = services
        self.handler = handler
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.handler is not None:
            task = asyncio.ensure_future(self._proxied(data, addr))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        try:
            reply = respond(data, self.services())
        except Exception as exc:  # one bad query must not stop the server
            _log.warning("dns query failed", client=addr[0], error=repr(exc))
            return
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    async def _proxied(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.handler is not None
        try:
            reply = await self.handler(data, addr, UDP_MAX)
        except Exception as exc:  # one bad query must not stop the server
            _log.warning("dns query failed", client=addr[0], error=repr(exc))
            return
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


class DnsServer:
    """Serves until `close()`; `services` is read on every query (the agent's live dict).
    With a `handler` (the DNS proxy) every query goes through it instead."""

    def __init__(self, listen: Listen, services: Services,
                 handler: Handler | None = None) -> None:
        self.listen = listen
        self.services = services
        self.handler = handler
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    async def start(self, netns: str | None) -> None:
        """Raises OSError naming the flag when the address cannot be bound (taken, or not an
        address of the namespace)."""
        try:
            udp, tcp = open_sockets(netns, self.listen)
        except OSError as exc:
            raise OSError(exc.errno, f"--dns-listen {self.listen}: {exc.strerror or exc}"
                          f"{f' in network namespace {netns}' if netns else ''}") from exc
        loop = asyncio.get_running_loop()
        try:
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self.services, self.handler), sock=udp)
            self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp)
        except BaseException:
            udp.close()
            tcp.close()
            raise

    async def _serve_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("", 0)

        async def answer(data: bytes) -> bytes | None:
            if self.handler is not None:
                return await self.handler(data, (peer[0], peer[1]), TCP_MAX)
            return respond(data, self.services(), max_size=TCP_MAX)

        await serve_tcp_queries(reader, writer, answer)

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await self._tcp.wait_closed()
