"""The DNS proxy's transparent sockets: where the datapath hands the port-53 traffic of pods
under `rules.dns`, whatever server they asked (Cilium's DNS proxy redirect).

The tc program assigns (bpf_sk_assign) a redirected UDP datagram, or the SYN of a TCP
connection, to the socket bound at 127.0.0.1:``port`` in the node namespace, exactly as it
does for the HTTP proxy (nodeagent.proxy.sockets); the proxy routes (proxyroutes) deliver the
marked packets locally.  Both sockets are IP_TRANSPARENT, so the kernel accepts packets whose
destination is not a local address:
- UDP: IP_RECVORIGDSTADDR gives each datagram's original destination; the reply is sent from
  that address and port, so the pod sees the answer coming from the server it asked.  As in
  Cilium's DNS proxy, it goes out of one raw UDP socket (bound to 127.0.0.1 so it receives
  next to nothing) that writes the UDP header itself (the source port) and sets the source
  address with IP_PKTINFO (IP_TRANSPARENT allows a foreign one): nothing is bound per reply,
  and the node's own DNS address, whose socket holds it, is answered the same way.
- TCP: the accepted connection's local address is the original destination already.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Awaitable, Callable

from bulkhead import log
from nodeagent.datapath import netlink
from nodeagent.dns.answer import TCP_MAX, UDP_MAX
from nodeagent.dns.listen import DEFAULT_REDIRECT_PORT
from nodeagent.dns.server import _setns, serve_tcp_queries
from nodeagent.proxy.sockets import IP_TRANSPARENT, LISTEN_ADDRESS, accepted, listener

_log = log.get(__name__)

IP_RECVORIGDSTADDR = 20
IP_ORIGDSTADDR = 20
IP_PKTINFO = 8
DEFAULT_PORT = DEFAULT_REDIRECT_PORT

Address = tuple[str, int]
Handler = Callable[[bytes, Address, int, Address], Awaitable[bytes | None]]
"""(query, client, reply size limit, server the client asked) -> reply: DnsProxy.handle."""


def udp_socket(port: int) -> socket.socket:
    """The transparent UDP socket redirected datagrams are assigned to."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        s.setsockopt(socket.SOL_IP, IP_RECVORIGDSTADDR, 1)
        s.bind((LISTEN_ADDRESS, port))
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


def original_destination(ancdata: list[tuple[int, int, bytes]]) -> Address | None:
    """The IP_ORIGDSTADDR control message (a sockaddr_in) as (ip, port)."""
    for level, kind, data in ancdata:
        if level == socket.SOL_IP and kind == IP_ORIGDSTADDR and len(data) >= 8:
            port, raw = struct.unpack_from("!H4s", data, 2)
            return socket.inet_ntoa(raw), port
    return None


def reply_socket() -> socket.socket:
    """The raw UDP socket replies are written to (any source address and port)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    try:
        s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        s.bind((LISTEN_ADDRESS, 0))
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


def send_reply(raw: socket.socket, reply: bytes, server: Address, client: Address) -> None:
    """``reply`` to ``client`` as a UDP datagram from ``server`` (checksum 0: none, allowed
    over IPv4)."""
    header = struct.pack("!HHHH", server[1], client[1], 8 + len(reply), 0)
    pktinfo = struct.pack("=i4s4s", 0, socket.inet_aton(server[0]), bytes(4))
    raw.sendmsg([header, reply], [(socket.SOL_IP, IP_PKTINFO, pktinfo)], 0, (client[0], 0))


def _in_netns(netns: str | None, make: Callable[[], socket.socket]) -> socket.socket:
    """``make()`` on a fresh thread that entered ``netns`` (the socket keeps the namespace)."""
    result: list[socket.socket] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            if netns:
                _setns(netlink.ns_path(netns))
            result.append(make())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=run, name="dns-transparent-netns")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


class TransparentDns:
    """Serves the redirected queries with ``handler`` until `close()`."""

    def __init__(self, port: int, handler: Handler) -> None:
        self.port = port
        self.handler = handler
        self._udp: socket.socket | None = None
        self._raw: socket.socket | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = {"udp": 0, "tcp": 0, "unknown_destination": 0}

    async def start(self, netns: str | None) -> None:
        """Raises OSError naming the flag when a socket cannot be bound."""
        opened: list[socket.socket] = []
        try:
            for make in (lambda: udp_socket(self.port), reply_socket,
                         lambda: listener(self.port)):
                opened.append(_in_netns(netns, make))
        except OSError as exc:
            raise OSError(exc.errno, f"--dns-proxy-port {self.port}: {exc.strerror or exc}"
                          f"{f' in network namespace {netns}' if netns else ''}") from exc
        finally:
            if len(opened) < 3:
                for sock in opened:
                    sock.close()
        udp, self._raw, tcp = opened
        self._udp = udp
        asyncio.get_running_loop().add_reader(udp.fileno(), self._readable)
        self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp)

    def _readable(self) -> None:
        assert self._udp is not None
        for _ in range(64):  # a burst, then back to the loop
            try:
                data, ancdata, _flags, client = self._udp.recvmsg(UDP_MAX, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                _log.warning("dns redirect receive failed", error=str(exc))
                return
            server = original_destination(ancdata)
            if server is None:
                self.stats["unknown_destination"] += 1
                continue
            self.stats["udp"] += 1
            task = asyncio.ensure_future(self._answer_udp(data, client, server))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer_udp(self, data: bytes, client: Address, server: Address) -> None:
        try:
            reply = await self.handler(data, client, UDP_MAX, server)
            if reply is not None and self._raw is not None:
                send_reply(self._raw, reply, server, client)
        except Exception as exc:  # one bad query must not stop the server
            _log.warning("dns query failed", client=client[0], server=server[0],
                         error=repr(exc))

    async def _serve_tcp(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        """RFC 7766 framing; the connection's local address is the server the pod dialled."""
        sock = writer.get_extra_info("socket")
        try:
            if sock is not None:
                accepted(sock)  # its packets are the proxy's own from now on
            peer = writer.get_extra_info("peername") or ("", 0)
            local = writer.get_extra_info("sockname") or ("", 0)
            self.stats["tcp"] += 1
        except Exception as exc:
            _log.warning("dns query failed", transport="tcp", error=repr(exc))
            writer.close()
            return

        async def answer(data: bytes) -> bytes | None:
            return await self.handler(data, (peer[0], peer[1]), TCP_MAX, (local[0], local[1]))

        await serve_tcp_queries(reader, writer, answer)

    async def close(self) -> None:
        if self._udp is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._udp.fileno())
            self._udp.close()
            self._udp = None
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(Exception):
                await self._tcp.wait_closed()
        for task in list(self._tasks):
            task.cancel()
