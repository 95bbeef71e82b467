"""Runs inside a client pod's network namespace: one TCP connection attempt to IP:PORT every
INTERVAL seconds, each printed as `<start> <end> ok|timeout|refused|error` (wall clock), until
stdin closes or the process is killed.

Usage: python prober.py IP PORT INTERVAL TIMEOUT
"""

from __future__ import annotations

import socket
import sys
import time


def attempt(ip: str, port: int, timeout: float) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((ip, port))
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return "ok" if s.recv(4096) else "empty"
        except TimeoutError:
            return "timeout"
        except ConnectionRefusedError:
            return "refused"
        except OSError:
            return "error"


def main() -> int:
    ip, port, interval, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), \
        float(sys.argv[4])
    print("ready", flush=True)
    while True:
        start = time.time()
        result = attempt(ip, port, timeout)
        print(f"{start:.3f} {time.time():.3f} {result}", flush=True)
        time.sleep(max(0.0, interval - (time.time() - start)))


if __name__ == "__main__":
    sys.exit(main())
