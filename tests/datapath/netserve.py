"""Tiny test server run inside a pod namespace: answers TCP with a line and echoes UDP.

Usage: python netserve.py NAME tcp:80 tcp:81 udp:5353 ...
Prints "ready" once every socket is listening.
"""

from __future__ import annotations

import socket
import sys
import threading


def serve_tcp(sock: socket.socket, name: str) -> None:
    while True:
        conn, _ = sock.accept()
        with conn:
            conn.settimeout(2)
            try:
                conn.recv(4096)
                body = f"{name}\n".encode()
                conn.sendall(
                    b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
                )
            except OSError:
                pass


def serve_udp(sock: socket.socket, name: str) -> None:
    while True:
        data, peer = sock.recvfrom(4096)
        sock.sendto(name.encode() + b":" + data, peer)


def main() -> None:
    name, specs = sys.argv[1], sys.argv[2:]
    threads = []
    for spec in specs:
        proto, port = spec.split(":")
        if proto == "tcp":
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", int(port)))
            s.listen(64)
            threads.append(threading.Thread(target=serve_tcp, args=(s, name), daemon=True))
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("0.0.0.0", int(port)))
            threads.append(threading.Thread(target=serve_udp, args=(s, name), daemon=True))
    for t in threads:
        t.start()
    print("ready", flush=True)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
