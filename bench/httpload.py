"""Keep-alive HTTP load from inside a pod: CONCURRENCY connections, each sending GET PATH and
reading the answer in turn for SECONDS.  Prints {"requests", "rps", "p50_ms", "p99_ms",
"errors"} as JSON.

Usage: python httpload.py IP PORT CONCURRENCY SECONDS PATH
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


async def worker(ip: str, port: int, path: str, end: float, lat: list[float]) -> int:
    reader, writer = await asyncio.open_connection(ip, port)
    request = f"GET {path} HTTP/1.1\r\nHost: {ip}\r\n\r\n".encode()
    errors = 0
    try:
        while time.monotonic() < end:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
            lat.append(time.perf_counter() - start)
    finally:
        writer.close()
    return errors


async def main() -> None:
    ip, port, conc, seconds, path = sys.argv[1:]
    lat: list[float] = []
    start = time.monotonic()
    end = start + float(seconds)
    errors = await asyncio.gather(*(worker(ip, int(port), path, end, lat)
                                    for _ in range(int(conc))))
    took = time.monotonic() - start
    lat.sort()
    n = len(lat)
    print(json.dumps({"requests": n, "rps": n / took, "errors": sum(errors),
                      "p50_ms": lat[n // 2] * 1e3 if n else 0.0,
                      "p99_ms": lat[min(n - 1, int(n * 0.99))] * 1e3 if n else 0.0}))


if __name__ == "__main__":
    asyncio.run(main())
