"""TCP request/response load, run inside a pod namespace by bench/datapath.py.

`server PORT`: echoes fixed-size messages on every connection; after one message on a
connection opened by `crr`, it closes (so TIME_WAIT stays on the server and the client's ports
recycle).  Prints `ready` once listening.

`client IP PORT SECONDS rr|crr`: prints one JSON object with the transactions per second.
  rr:  one connection, 64-byte request / 64-byte reply round trips (netperf TCP_RR);
  crr: a new connection per transaction: connect, request, reply, close (netperf TCP_CRR).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time

SIZE = 64
REQUEST = b"q" * SIZE
ONE_SHOT = b"c"  # first byte of a crr request: reply once, then close


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return buf
        buf += chunk
    return buf


def handle(conn: socket.socket) -> None:
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            msg = recv_exact(conn, SIZE)
            if len(msg) < SIZE:
                return
            conn.sendall(msg)
            if msg[:1] == ONE_SHOT:
                return


def serve(port: int) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(1024)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def rr(ip: str, port: int, seconds: float) -> int:
    done = 0
    with socket.create_connection((ip, port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sock.sendall(REQUEST)
            if len(recv_exact(sock, SIZE)) < SIZE:
                raise ConnectionError("server closed the connection")
            done += 1
    return done


def crr(ip: str, port: int, seconds: float) -> int:
    done = 0
    request = ONE_SHOT + REQUEST[1:]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with socket.create_connection((ip, port), timeout=5) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(request)
            if len(recv_exact(sock, SIZE)) < SIZE:
                raise ConnectionError("short reply")
            sock.recv(1)  # the server's FIN: it closes first
        done += 1
    return done


def main(argv: list[str]) -> None:
    if argv[:1] == ["server"]:
        serve(int(argv[1]))
        return
    _, ip, port, seconds, mode = argv
    start = time.monotonic()
    count = (rr if mode == "rr" else crr)(ip, int(port), float(seconds))
    elapsed = time.monotonic() - start
    print(json.dumps({"mode": mode, "transactions": count, "seconds": elapsed,
                      "rate": count / elapsed}))


if __name__ == "__main__":
    main(sys.argv[1:])
