"""Transparent sockets: the listener the tc programs assign redirected SYNs to, and the
upstream connections that leave with the client's address as their source."""

from __future__ import annotations

import asyncio
import socket

from nodeagent.datapath.layout import (
    MARK_PROXY_MASK,
    MARK_PROXY_OUT,
    MARK_TO_PROXY_EGRESS,
    MARK_TO_PROXY_INGRESS,
)
from nodeagent.proxy.rules import EGRESS, INGRESS

IP_TRANSPARENT = 19
IP_BIND_ADDRESS_NO_PORT = 24
SO_MARK = 36
LISTEN_ADDRESS = "127.0.0.1"
"""bpf_sk_assign looks the listener up at 127.0.0.1:port (bulkhead datapath.c), as Cilium does."""


def listener(port: int) -> socket.socket:
    """A transparent listener: it accepts connections for any destination address."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        s.bind((LISTEN_ADDRESS, port))
        s.listen(4096)
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


def classify(mark: int) -> tuple[str, int] | None:
    """(direction, peer identity) from the mark of the redirected SYN (tcp_fwmark_accept
    gives it to the accepted socket); None: not a redirected connection."""
    low = mark & MARK_PROXY_MASK
    if low == MARK_TO_PROXY_INGRESS:
        return INGRESS, mark >> 8
    if low == MARK_TO_PROXY_EGRESS:
        return EGRESS, mark >> 8
    return None


def accepted(sock: socket.socket) -> tuple[str, int] | None:
    """Classify an accepted connection, then mark it as the proxy's own (its packets are
    routed by the proxy rules and never policed again)."""
    kind = classify(sock.getsockopt(socket.SOL_SOCKET, SO_MARK))
    sock.setsockopt(socket.SOL_SOCKET, SO_MARK, MARK_PROXY_OUT)
    return kind


async def connect_upstream(source_ip: str, dst: tuple[str, int],
                           timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the original destination from the client's address (IP_TRANSPARENT)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.setsockopt(socket.SOL_SOCKET, SO_MARK, MARK_PROXY_OUT)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.bind((source_ip, 0))
        s.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(s, dst), timeout)
        return await asyncio.open_connection(sock=s)
    except BaseException:
        s.close()
        raise
