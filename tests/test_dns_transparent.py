"""The DNS proxy's transparent sockets (nodeagent.dns.transparent) on real sockets in this
namespace: each UDP datagram's original destination is read from IP_ORIGDSTADDR and the reply
is sent from that address and port (a raw socket writes it); a TCP connection's is its local
address.  (The datapath redirect that brings other servers' traffic here is in
integration/test_fqdn_redirect.py.)"""

from __future__ import annotations

import asyncio
import socket
import struct

import dns.message
import pytest

from controlplane.store.embedded import free_port
from nodeagent.dns.transparent import TransparentDns

pytestmark = pytest.mark.timeout(30)


async def test_udp_and_tcp_queries_reach_the_handler_with_the_server_asked() -> None:
    seen: list[tuple[str, tuple[str, int], tuple[str, int]]] = []

    async def handler(wire: bytes, client: tuple[str, int], limit: int,
                      server: tuple[str, int]) -> bytes:
        query = dns.message.from_wire(wire)
        seen.append((query.question[0].name.to_text(), client, server))
        return dns.message.make_response(query).to_wire()

    port = free_port()
    proxy = TransparentDns(port, handler)
    await proxy.start(None)
    loop = asyncio.get_running_loop()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind(("127.0.0.2", 0))
        udp.setblocking(False)
        query = dns.message.make_query("api.world.test", "A")
        await loop.sock_sendto(udp, query.to_wire(), ("127.0.0.1", port))
        wire, source = await asyncio.wait_for(loop.sock_recvfrom(udp, 65535), 10)
        assert dns.message.from_wire(wire).id == query.id
        assert source == ("127.0.0.1", port)  # from the address the client sent to

        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       local_addr=("127.0.0.3", 0))
        tcp_query = dns.message.make_query("other.world.test", "A").to_wire()
        writer.write(struct.pack("!H", len(tcp_query)) + tcp_query)
        size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 10))[0]
        await reader.readexactly(size)
        writer.close()
    finally:
        udp.close()
        await proxy.close()
    assert [(name, client[0], server) for name, client, server in seen] == [
        ("api.world.test.", "127.0.0.2", ("127.0.0.1", port)),
        ("other.world.test.", "127.0.0.3", ("127.0.0.1", port))]
    assert proxy.stats["udp"] == 1 and proxy.stats["tcp"] == 1


async def test_a_taken_port_is_named() -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]

    async def handler(wire: bytes, client: tuple[str, int], limit: int,
                      server: tuple[str, int]) -> bytes | None:
        return None

    try:
        with pytest.raises(OSError, match=f"--dns-proxy-port {port}"):
            await TransparentDns(port, handler).start(None)
    finally:
        taken.close()

