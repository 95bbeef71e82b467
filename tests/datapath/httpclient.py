"""HTTP test client run inside a pod namespace; prints one JSON document.

  python httpclient.py IP PORT seq "GET /a" "PUT /b" ...   one keep-alive connection, in turn
  python httpclient.py IP PORT pipeline "GET /a" "PUT /b"   both requests in one write
  python httpclient.py IP PORT upload PATH MIB              chunked POST of MIB MiB
  python httpclient.py IP PORT garbage                      non-HTTP bytes; how it ended
  python httpclient.py IP PORT loop SECONDS "GET /a" ...    new connection per round, repeated

A request may carry headers: "GET /a|X-Token: 1|Host: foo".  The spec WAIT prints "waiting"
on stderr and reads a line from stdin before going on (the connection stays open).  Results
are [status, body] pairs ("error" and the exception for a failed one).
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import time
from typing import Any

TIMEOUT = 5.0


def _split(spec: str) -> tuple[str, str, dict[str, str]]:
    first, *headers = spec.split("|")
    method, path = first.split(" ", 1)
    return method, path, dict(h.split(": ", 1) for h in headers)


def seq(ip: str, port: int, specs: list[str]) -> list[Any]:
    conn = http.client.HTTPConnection(ip, port, timeout=TIMEOUT)
    out: list[Any] = []
    for spec in specs:
        if spec == "WAIT":
            print("waiting", file=sys.stderr, flush=True)
            sys.stdin.readline()
            continue
        method, path, headers = _split(spec)
        try:
            conn.request(method, path, headers=headers)
            r = conn.getresponse()
            out.append([r.status, r.read().decode()])
        except Exception as e:
            out.append(["error", repr(e)])
            conn.close()
            conn = http.client.HTTPConnection(ip, port, timeout=TIMEOUT)
    conn.close()
    return out


def pipeline(ip: str, port: int, specs: list[str]) -> list[Any]:
    s = socket.create_connection((ip, port), timeout=TIMEOUT)
    raw = b"".join(f"{m} {p} HTTP/1.1\r\nHost: {ip}\r\n\r\n".encode()
                   for m, p, _ in map(_split, specs))
    s.sendall(raw)
    f = s.makefile("rb")  # one buffer for every answer: they may arrive in one segment
    out: list[Any] = []
    for _ in specs:
        status = int(f.readline().split()[1])
        length = 0
        while (line := f.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        out.append([status, f.read(length).decode()])
    s.close()
    return out


def upload(ip: str, port: int, path: str, mib: int) -> list[Any]:
    conn = http.client.HTTPConnection(ip, port, timeout=60)
    block = b"x" * (1 << 20)
    conn.request("POST", path, body=(block for _ in range(mib)), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    r = conn.getresponse()
    return [[r.status, r.read().decode()]]


def garbage(ip: str, port: int) -> list[Any]:
    s = socket.create_connection((ip, port), timeout=TIMEOUT)
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n")
    try:
        data = s.recv(4096)
        return [["closed" if not data else "data", data.decode(errors="replace")]]
    except ConnectionResetError:
        return [["reset", ""]]
    except TimeoutError:
        return [["open", ""]]
    finally:
        s.close()


def loop(ip: str, port: int, seconds: float, specs: list[str]) -> list[Any]:
    """Until ``seconds`` pass: one connection per round, every spec on it."""
    out: list[Any] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(seq(ip, port, specs))
        time.sleep(0.05)
    return out


def main() -> None:
    ip, port, mode, *rest = sys.argv[1:]
    if mode == "seq":
        result = seq(ip, int(port), rest)
    elif mode == "pipeline":
        result = pipeline(ip, int(port), rest)
    elif mode == "upload":
        result = upload(ip, int(port), rest[0], int(rest[1]))
    elif mode == "garbage":
        result = garbage(ip, int(port))
    else:
        result = loop(ip, int(port), float(rest[0]), rest[1:])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
