"""One proxied HTTP/1.x connection: requests checked one by one, bodies streamed both ways.

Two tasks per connection.  The request side reads at most ``READ_SIZE`` bytes, parses them
(httptools), and for each request asks the rule table: an allowed request's head (with the
header edits of the matcher) and body go upstream, a denied one's body is discarded; each
request puts one item on the response queue, in order.  The response side takes the items
in order: the upstream's next response is streamed back, or ``403 Access denied`` is
written, so pipelined requests get their answers in order and the connection stays usable.
Nothing waits for a whole body: each read is written on and drained before the next read.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import httptools  # type: ignore[import-untyped]

from bulkhead.httprules import HttpRequest
from nodeagent.proxy import sockets
from nodeagent.proxy.rules import INGRESS, Decision

READ_SIZE = 65536
MAX_PIPELINED = 64
CONNECT_TIMEOUT = 5.0
FORBIDDEN = (b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
             b"\r\nAccess denied")
UNAVAILABLE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
               b"Content-Length: 22\r\nConnection: close\r\n\r\nupstream connect error")
SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


@dataclass(frozen=True)
class ConnKey:
    """What a connection's requests are checked against."""

    endpoint: str
    direction: str
    peer: int
    port: int
    client: tuple[str, int]
    server: tuple[str, int]


class Owner(Protocol):
    """What a connection needs from the proxy: the current rules and somewhere to report."""

    def check(self, key: ConnKey, request: HttpRequest) -> Decision: ...

    def record(self, flow: dict[str, Any]) -> None: ...


@dataclass
class _Request:
    method: str
    target: str
    url: str
    version: str
    keep_alive: bool
    headers: list[tuple[str, str]]
    started: int = field(default_factory=time.monotonic_ns)


class _RequestEvents:
    """httptools callbacks -> a list of events for the request side."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.events: list[tuple[Any, ...]] = []
        self._url = b""
        self._headers: list[tuple[str, str]] = []

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        p = self.parser
        self.events.append(("head", p.get_method().decode("latin-1"),
                            self._url.decode("latin-1"), p.get_http_version(),
                            p.should_keep_alive(), self._headers))

    def on_body(self, body: bytes) -> None:
        self.events.append(("body", body))

    def on_message_complete(self) -> None:
        self.events.append(("end",))


class _ResponseEvents:
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.events: deque[tuple[Any, ...]] = deque()
        self._reason = b""
        self._headers: list[tuple[str, str]] = []

    def on_message_begin(self) -> None:
        self._reason = b""
        self._headers = []

    def on_status(self, status: bytes) -> None:
        self._reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        p = self.parser
        self.events.append(("head", p.get_status_code(), self._reason.decode("latin-1"),
                            p.get_http_version(), p.should_keep_alive(), self._headers))

    def on_body(self, body: bytes) -> None:
        self.events.append(("body", body))

    def on_message_complete(self) -> None:
        self.events.append(("end",))


def _is_chunked(headers: list[tuple[str, str]]) -> bool:
    return any(k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in headers)


def _head(first_line: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [first_line] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def shown_headers(headers: list[tuple[str, str]]) -> list[dict[str, str]]:
    """Headers for a flow, never with the values of credentials."""
    return [{"key": k, "value": "[redacted]" if k.lower() in SECRET_HEADERS else v}
            for k, v in headers]


class Connection:
    """One accepted client connection and its (lazily opened) upstream connection."""

    def __init__(self, owner: Owner, key: ConnKey, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.owner = owner
        self.key = key
        self.creader = reader
        self.cwriter = writer
        self.ureader: asyncio.StreamReader | None = None
        self.uwriter: asyncio.StreamWriter | None = None
        self.queue: asyncio.Queue[tuple[str, _Request] | None] = asyncio.Queue()
        self.answered = asyncio.Event()
        """Set whenever the answer side took an item (or ended): a client that pipelines
        more than MAX_PIPELINED requests without reading the answers is not read on."""
        self.requests = _RequestEvents()
        self.responses = _ResponseEvents()
        self.forwarding = False
        self.chunked = False
        self.closing = False

    async def run(self) -> None:
        answers = asyncio.create_task(self._answer())
        try:
            await self._read_requests()
        except (ConnectionError, OSError):
            self.closing = True
        finally:
            self.queue.put_nowait(None)  # after the answers still owed (a half-close)
            with contextlib.suppress(Exception):
                await answers
            for w in (self.uwriter, self.cwriter):
                if w is not None:
                    w.close()
                    with contextlib.suppress(Exception):
                        await w.wait_closed()

    # -- requests -------------------------------------------------------------------------

    async def _read_requests(self) -> None:
        while not self.closing:
            while self.queue.qsize() > MAX_PIPELINED and not self.closing:
                self.answered.clear()
                await self.answered.wait()
            if self.closing:
                return
            data = await self.creader.read(READ_SIZE)
            if not data:
                return
            error: Exception | None = None
            try:
                self.requests.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                error = ValueError("protocol upgrade is not proxied")
            except httptools.HttpParserError as e:
                error = e
            events, self.requests.events = self.requests.events, []
            for event in events:
                await self._on_request_event(event)
            if error is not None:
                self.owner.record(self._flow("request", "DROPPED", None,
                                             summary=f"not HTTP/1.x ({error})"))
                self.closing = True
                self.cwriter.transport.abort()
                return

    async def _on_request_event(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "head":
            _, method, target, version, keep_alive, headers = event
            server_ip = self.key.server[0]
            request = HttpRequest(method, target, "", headers)
            request.host = request.header("host") or server_ip
            decision = self.owner.check(self.key, request)
            req = _Request(method, target, f"http://{request.host}{target}", version,
                           keep_alive, request.headers)
            if decision.allowed and await self._upstream():
                assert self.uwriter is not None
                self.uwriter.write(_head(f"{method} {target} HTTP/{version}", request.headers))
                self.forwarding = True
                self.chunked = _is_chunked(request.headers)
                await self.queue.put(("up", req))
                self.owner.record(self._flow("request", "FORWARDED", req))
            elif decision.allowed:
                self.forwarding = False
                await self.queue.put(("unavailable", req))
                self.owner.record(self._flow("response", "FORWARDED", req, code=503,
                                             summary="upstream connect error"))
            else:
                self.forwarding = False
                await self.queue.put(("deny", req))
                self.owner.record(self._flow("request", "DROPPED", req, why=decision.why))
        elif kind == "body" and self.forwarding:
            assert self.uwriter is not None
            self.uwriter.write(_chunk(event[1]) if self.chunked else event[1])
            await self.uwriter.drain()
        elif kind == "end" and self.forwarding:
            assert self.uwriter is not None
            if self.chunked:
                self.uwriter.write(b"0\r\n\r\n")
            await self.uwriter.drain()
            self.forwarding = False

    async def _upstream(self) -> bool:
        if self.uwriter is not None:
            return not self.uwriter.is_closing()
        try:
            source = (None if sockets.outside(self.key.direction, self.key.peer)
                      else self.key.client)
            self.ureader, self.uwriter = await sockets.connect_upstream(
                source, self.key.server, CONNECT_TIMEOUT)
        except (TimeoutError, OSError):
            return False
        return True

    # -- answers --------------------------------------------------------------------------

    async def _answer(self) -> None:
        try:
            await self._answer_all()
        finally:
            self.closing = True
            self.answered.set()

    async def _answer_all(self) -> None:
        while True:
            item = await self.queue.get()
            self.answered.set()
            if item is None:
                return
            kind, req = item
            if kind == "deny":
                self.cwriter.write(FORBIDDEN)
                await self.cwriter.drain()
                if not req.keep_alive:
                    break
            elif kind == "unavailable":
                self.cwriter.write(UNAVAILABLE)
                await self.cwriter.drain()
                break
            elif not await self._relay(req):
                break
        self.cwriter.close()

    async def _next_response_event(self) -> tuple[Any, ...] | None:
        while not self.responses.events:
            assert self.ureader is not None
            data = await self.ureader.read(READ_SIZE)
            if not data:
                return None
            try:
                self.responses.parser.feed_data(data)
            except httptools.HttpParserError:
                return None
        return self.responses.events.popleft()

    async def _relay(self, req: _Request) -> bool:
        """Stream the upstream's answer to ``req`` (1xx interim answers included); False when
        the client connection must close afterwards."""
        chunked = False
        keep_alive = False
        while True:
            event = await self._next_response_event()
            if event is None:
                return False
            kind = event[0]
            if kind == "head":
                _, code, reason, version, keep_alive, headers = event
                self.cwriter.write(_head(f"HTTP/{version} {code} {reason}", headers))
                chunked = _is_chunked(headers)
                if code >= 200:
                    self.owner.record(self._flow("response", "FORWARDED", req, code=code,
                                                 headers=headers))
                if req.method == "HEAD" and code >= 200:
                    self.responses = _ResponseEvents()  # a HEAD answer has no body
                    await self.cwriter.drain()
                    return keep_alive and req.keep_alive
            elif kind == "body":
                self.cwriter.write(_chunk(event[1]) if chunked else event[1])
                await self.cwriter.drain()
            else:
                if chunked:
                    self.cwriter.write(b"0\r\n\r\n")
                await self.cwriter.drain()
                if code >= 200:
                    return bool(keep_alive and req.keep_alive)

    # -- flows ----------------------------------------------------------------------------

    def _flow(self, kind: str, verdict: str, req: _Request | None, *, code: int = 0,
              why: str = "", summary: str = "",
              headers: list[tuple[str, str]] | None = None) -> dict[str, Any]:
        k = self.key
        flow: dict[str, Any] = {
            "time_ns": time.time_ns(), "type": kind, "verdict": verdict,
            "endpoint": k.endpoint, "direction": k.direction, "peer": k.peer,
            "src": list(k.client), "dst": list(k.server), "why": why, "summary": summary,
        }
        if req is not None:
            flow["http"] = {"method": req.method, "url": req.url,
                            "protocol": f"HTTP/{req.version}", "code": code,
                            "headers": shown_headers(req.headers if headers is None
                                                     else headers)}
            if kind == "response":
                flow["latency_ns"] = time.monotonic_ns() - req.started
        return flow


def conn_key(sock: Any, kind: tuple[str, int]) -> ConnKey:
    """The key of an accepted redirected connection: its local address is the original
    destination (transparent accept); the endpoint is the destination for ingress, the
    client for egress."""
    direction, peer = kind
    server = sock.getsockname()[:2]
    client = sock.getpeername()[:2]
    endpoint = server[0] if direction == INGRESS else client[0]
    return ConnKey(endpoint, direction, peer, server[1], tuple(client), tuple(server))
