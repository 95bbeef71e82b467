"""Connection prober, run inside a client pod's namespace by bench/services.py.

Prints ``ready``, then reads ``IP PORT`` lines on stdin.  For each it opens a new TCP
connection to IP:PORT every INTERVAL seconds (several attempts in flight, so one SYN lost
before the service existed does not hold the next back) until one completes its handshake
and a 64-byte request/reply (bench/rr.py's one-shot exchange) through it, then prints
``{"at": <CLOCK_MONOTONIC seconds of the handshake>, "attempts": N}``, or ``{"error": ...}``
after DEADLINE seconds.  CLOCK_MONOTONIC is one clock for every namespace, so the caller
compares ``at`` with its own ``time.monotonic()``.
"""

from __future__ import annotations

import errno
import json
import select
import socket
import sys
import time

import rr  # bench/ is sys.path[0] when run as a script

INTERVAL = 0.005
ATTEMPT_TIMEOUT = 1.0
DEADLINE = 15.0


def exchange(sock: socket.socket) -> bool:
    """One request/reply on a connected socket; the server closes after it."""
    sock.setblocking(True)
    sock.settimeout(2.0)
    try:
        sock.sendall(rr.ONE_SHOT + rr.REQUEST[1:])
        return len(rr.recv_exact(sock, rr.SIZE)) == rr.SIZE
    except OSError:
        return False


def reach(ip: str, port: int) -> dict[str, object]:
    start = time.monotonic()
    pending: dict[socket.socket, float] = {}
    attempts = 0
    next_try = start
    try:
        while True:
            now = time.monotonic()
            if now - start > DEADLINE:
                return {"error": f"no connection through {ip}:{port} in {DEADLINE:.0f} s",
                        "attempts": attempts}
            if now >= next_try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                attempts += 1
                if sock.connect_ex((ip, port)) in (0, errno.EINPROGRESS):
                    pending[sock] = now
                else:
                    sock.close()
                next_try = now + INTERVAL
            for sock, opened in list(pending.items()):
                if now - opened > ATTEMPT_TIMEOUT:
                    sock.close()
                    del pending[sock]
            wait = max(0.0, next_try - time.monotonic())
            if not pending:
                time.sleep(wait)
                continue
            _, writable, _ = select.select([], list(pending), [], wait)
            for sock in writable:
                del pending[sock]
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    sock.close()
                    continue
                at = time.monotonic()
                ok = exchange(sock)
                sock.close()
                if ok:
                    return {"at": at, "attempts": attempts}
    finally:
        for sock in pending:
            sock.close()


def main() -> None:
    print("ready", flush=True)
    for line in sys.stdin:
        ip, port = line.split()
        print(json.dumps(reach(ip, int(port))), flush=True)


if __name__ == "__main__":
    main()
