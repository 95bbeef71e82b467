"""Many requests from inside a pod namespace; prints a JSON count of who answered.

Usage: python netmany.py IP PORT COUNT TIMEOUT [udp:SOURCE_PORT]
TCP (default): each request is a new connection that sends one request and reads the answer
to the end; the body (netserve's pod name) is counted, anything else (timeouts, resets,
partial answers) counts as "failed".  udp:SOURCE_PORT: every request goes out of one socket
bound to SOURCE_PORT (one 5-tuple) and the name in netserve's echo is counted.
"""

from __future__ import annotations

import collections
import json
import socket
import sys


def one(ip: str, port: int, timeout: float) -> str:
    with socket.create_connection((ip, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.0 200") or not body.endswith(b"\n"):
        raise OSError(f"bad answer {data!r}")
    return body.decode().strip()


def udp(ip: str, port: int, count: int, timeout: float, source_port: int,
        seen: collections.Counter[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", source_port))
        s.connect((ip, port))
        s.settimeout(timeout)
        for _ in range(count):
            try:
                s.send(b"ping")
                seen[s.recv(4096).decode().partition(":")[0]] += 1
            except OSError:
                seen["failed"] += 1


def main() -> int:
    ip, port, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    seen: collections.Counter[str] = collections.Counter()
    if len(sys.argv) > 5 and sys.argv[5].startswith("udp:"):
        udp(ip, port, count, timeout, int(sys.argv[5][4:]), seen)
    for _ in range(count if len(sys.argv) <= 5 else 0):
        try:
            seen[one(ip, port, timeout)] += 1
        except OSError:
            seen["failed"] += 1
    print(json.dumps(dict(seen)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
