"""Many new TCP connections from inside a pod namespace; prints a JSON count of who answered.

Usage: python netmany.py IP PORT COUNT TIMEOUT
Each connection sends one request and reads the answer to the end; the body (netserve's
pod name) is counted, anything else (timeouts, resets, partial answers) counts as "failed".
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


def main() -> int:
    ip, port, count, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(count):
        try:
            seen[one(ip, port, timeout)] += 1
        except OSError:
            seen["failed"] += 1
    print(json.dumps(dict(seen)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
