"""Transparent sockets: the listener the tc programs assign redirected SYNs to, and the
upstream connections that leave with the client's address as their source (to the cluster) or
with the node's (outside it: see `outside`)."""

from __future__ import annotations

import asyncio
import socket

from bulkhead.reserved import WORLD_IDENTITIES
from nodeagent.datapath.layout import (
    LOCAL_IDENTITY_BIT,
    MARK_PROXY_MASK,
    MARK_PROXY_OUT,
    MARK_TO_PROXY_EGRESS,
    MARK_TO_PROXY_EGRESS_LEARNT,
    MARK_TO_PROXY_INGRESS,
)
from nodeagent.proxy.rules import EGRESS, INGRESS

IP_TRANSPARENT = 19
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
    if low == MARK_TO_PROXY_EGRESS_LEARNT:  # an address the DNS proxy learnt (toFQDNs)
        return EGRESS, LOCAL_IDENTITY_BIT | mark >> 8
    return None


def accepted(sock: socket.socket) -> tuple[str, int] | None:
    """Classify an accepted connection, then mark it as the proxy's own (its packets are
    routed by the proxy rules and never policed again)."""
    kind = classify(sock.getsockopt(socket.SOL_SOCKET, SO_MARK))
    sock.setsockopt(socket.SOL_SOCKET, SO_MARK, MARK_PROXY_OUT)
    return kind


def outside(direction: str, peer: int) -> bool:
    """An egress connection to an address outside the cluster (world, or an address the DNS
    proxy learnt for `toFQDNs`).  Its upstream leg leaves from the node's own address, by the
    node's routing, as a node's connection (Cilium masquerades pod traffic to the world the
    same way): sent from the pod's address, its replies would come back through the node's
    own interface, where nothing hands them to the proxy."""
    return direction == EGRESS and (peer in WORLD_IDENTITIES or bool(peer & LOCAL_IDENTITY_BIT))


def _bound(source_ip: str, avoid_port: int) -> socket.socket:
    """A transparent socket bound to the client's IP on a port other than ``avoid_port`` (the
    client's own: the same port towards the same server would give the upstream leg the
    client connection's tuple, and their conntrack entries would collide)."""
    held: list[socket.socket] = []
    try:
        while True:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            s.setsockopt(socket.SOL_SOCKET, SO_MARK, MARK_PROXY_OUT)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                s.bind((source_ip, 0))
            except BaseException:
                s.close()
                raise
            if s.getsockname()[1] != avoid_port:
                return s
            held.append(s)  # keep it bound so the next bind gets another port
    finally:
        for h in held:
            h.close()


async def connect_upstream(source: tuple[str, int] | None, dst: tuple[str, int],
                           timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the original destination from the client's address (IP_TRANSPARENT), or
    (``source`` None) from the node's, as the node's own connection (`outside`)."""
    if source is None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    else:
        s = _bound(*source)
    try:
        s.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(s, dst), timeout)
        return await asyncio.open_connection(sock=s)
    except BaseException:
        s.close()
        raise
