"""One connectivity probe, run inside a pod's (or the node's) network namespace by the agent:
`nsenter --net=PATH python -m nodeagent.pods.probe KIND IP [--port P] ...`. Prints one JSON
object: ok, detail, http_code, source_ip. A timeout is a result, not an error.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
from typing import Any

KINDS = ("tcp", "http", "udp", "icmp")


def _failure(exc: OSError) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    return exc.strerror or str(exc)


def tcp(ip: str, port: int, timeout: float) -> dict[str, Any]:
    try:
        with socket.create_connection((ip, port), timeout=timeout) as sock:
            return {"ok": True, "detail": "connected", "source_ip": sock.getsockname()[0]}
    except OSError as exc:
        return {"ok": False, "detail": _failure(exc)}


def http_request(ip: str, port: int, method: str, path: str, timeout: float
                 ) -> dict[str, Any]:
    conn = http.client.HTTPConnection(ip, port, timeout=timeout)
    try:
        conn.request(method, path)
        source = conn.sock.getsockname()[0] if conn.sock else ""
        response = conn.getresponse()
        response.read()
        return {"ok": True, "detail": f"HTTP {response.status}", "http_code": response.status,
                "source_ip": source}
    except OSError as exc:
        return {"ok": False, "detail": _failure(exc)}
    except http.client.HTTPException as exc:
        return {"ok": False, "detail": f"bad HTTP answer: {exc!r}"}
    finally:
        conn.close()


def udp(ip: str, port: int, timeout: float) -> dict[str, Any]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((ip, port))
            sock.send(b"bulkhead connectivity probe\n")
            sock.recv(2048)
            return {"ok": True, "detail": "answered", "source_ip": sock.getsockname()[0]}
        except OSError as exc:
            return {"ok": False, "detail": _failure(exc)}


def icmp(ip: str, timeout: float) -> dict[str, Any]:
    result = subprocess.run(["ping", "-n", "-q", "-c", "1", "-W", str(max(1, round(timeout))),
                             ip], capture_output=True, text=True)
    if result.returncode == 0:
        return {"ok": True, "detail": "echo reply"}
    return {"ok": False, "detail": "no echo reply" if result.returncode == 1
            else (result.stderr.strip() or f"ping exited {result.returncode}")}


def run(kind: str, ip: str, port: int, method: str, path: str, timeout: float
        ) -> dict[str, Any]:
    if kind == "tcp":
        return tcp(ip, port, timeout)
    if kind == "http":
        return http_request(ip, port, method or "GET", path or "/", timeout)
    if kind == "udp":
        return udp(ip, port, timeout)
    return icmp(ip, timeout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("ip")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--path", default="/")
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    json.dump(run(args.kind, args.ip, args.port, args.method, args.path, args.timeout),
              sys.stdout)
    print()


if __name__ == "__main__":
    main()
