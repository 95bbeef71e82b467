"""The proxy process: its listener, its connections, the agent's control channel, counters.

The control channel is a unix socket speaking JSON lines, one request and one answer each:
``{"op": "set", "port": P, "entries": [...]}`` replaces the rule table (rules.entry_to_json)
and (re)arms the listener on ``port``; ``{"op": "stats"}`` answers the counters;
``{"op": "flows"}`` answers and forgets the flows recorded since the last call.  Until the
first ``set`` the proxy has no listener, so redirected connections fail (closed, never open).

The agent keeps its control connection open.  A proxy that has had no agent connected for
``orphan_timeout`` seconds exits: a restarted agent adopts it well within that time, and one
whose agent and node are gone does not linger.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

from bulkhead.httprules import HttpRequest
from nodeagent.proxy import sockets
from nodeagent.proxy.http1 import Connection, ConnKey, conn_key
from nodeagent.proxy.rules import Decision, RuleTable, entry_from_json

MAX_FLOWS = 20000
LATENCY_BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


class Proxy:
    def __init__(self, control_path: Path, orphan_timeout: float = 30.0) -> None:
        self.control_path = control_path
        self.orphan_timeout = orphan_timeout
        self.agents = 0
        self.alone_since = time.monotonic()
        self.rules = RuleTable()
        self.port = 0
        self.server: asyncio.Server | None = None
        self.connections: set[asyncio.Task[None]] = set()
        self.flows: deque[dict[str, Any]] = deque(maxlen=MAX_FLOWS)
        self.counts: Counter[str] = Counter()
        self.requests: Counter[tuple[str, int, str]] = Counter()  # (method, code, verdict)
        self.latency = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self.latency_sum_ns = 0

    # -- Owner ------------------------------------------------------------------------------

    def check(self, key: ConnKey, request: HttpRequest) -> Decision:
        return self.rules.check_connection(key.endpoint, key.direction, key.peer, key.port,
                                           key.server, request)

    def record(self, flow: dict[str, Any]) -> None:
        self.flows.append(flow)
        http = flow.get("http") or {}
        if flow["type"] == "request":
            self.counts["denied" if flow["verdict"] == "DROPPED" else "allowed"] += 1
            if not http:
                self.counts["not_http"] += 1
            if flow["verdict"] == "DROPPED" and http:
                self.requests[(http["method"], 403, "DROPPED")] += 1
        else:
            self.requests[(http["method"], http["code"], "FORWARDED")] += 1
            latency = flow["latency_ns"]
            self.latency_sum_ns += latency
            ms = latency / 1e6
            i = next((i for i, b in enumerate(LATENCY_BUCKETS_MS) if ms <= b),
                     len(LATENCY_BUCKETS_MS))
            self.latency[i] += 1

    # -- listener ---------------------------------------------------------------------------

    async def listen(self, port: int) -> None:
        if self.server is not None and port == self.port:
            return
        sock = sockets.listener(port)
        old, self.server, self.port = self.server, None, port
        if old is not None:
            old.close()
        self.server = await asyncio.start_server(self._accept, sock=sock)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        kind = sockets.accepted(sock)
        if kind is None:  # not a redirected connection (someone dialled 127.0.0.1:port)
            writer.transport.abort()
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(self, conn_key(sock, kind), reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            await conn.run()
        finally:
            self.connections.discard(task)

    # -- control ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "listeners": [f"{sockets.LISTEN_ADDRESS}:{self.port}"] if self.server else [],
            "entries": len(self.rules.entries),
            "open_connections": len(self.connections),
            "requests_allowed": self.counts["allowed"],
            "requests_denied": self.counts["denied"],
            "not_http": self.counts["not_http"],
            "requests": [{"method": m, "code": c, "verdict": v, "count": n}
                         for (m, c, v), n in sorted(self.requests.items())],
            "latency_buckets_ms": list(LATENCY_BUCKETS_MS),
            "latency_counts": list(self.latency),
            "latency_sum_ns": self.latency_sum_ns,
        }

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "set":
            self.rules = RuleTable(entry_from_json(e) for e in request.get("entries", ()))
            await self.listen(int(request["port"]))
            return {"ok": True, "port": self.port}
        if op == "stats":
            return self.stats()
        if op == "flows":
            flows = list(self.flows)
            self.flows.clear()
            return {"flows": flows}
        return {"error": f"unknown op {op!r}"}

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.agents += 1
        try:
            while line := await reader.readline():
                try:
                    answer = await self.handle(json.loads(line))
                except Exception as e:  # a bad request is answered, never fatal
                    answer = {"error": f"{type(e).__name__}: {e}"}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.agents -= 1
            self.alone_since = time.monotonic()
            writer.close()

    async def _watch_orphan(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self.agents == 0 and time.monotonic() - self.alone_since > self.orphan_timeout:
                return

    async def serve(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.control_path.unlink()
        control = await asyncio.start_unix_server(self._control, path=str(self.control_path),
                                                  limit=64 << 20)
        os.chmod(self.control_path, 0o600)
        async with control:
            await self._watch_orphan()
        with contextlib.suppress(FileNotFoundError):
            self.control_path.unlink()
