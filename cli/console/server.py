"""The console's HTTP server (aiohttp): the page, its JSON API and its live streams.

aiohttp because it is asyncio like grpc.aio (one event loop for the browser's requests and the
control plane's streams), serves streamed responses (Server-Sent Events) without an ASGI
server beside it, and is one well-kept package. Live views are Server-Sent Events: one `data:`
JSON object per event; the browser caps the rows it keeps.

Routes: `/` (the page), `/static/*`, and under `/api/`: `map` and `map/stream?namespace=NS`,
`flows/stream?verdict=DROPPED&...` (`bulkhead observe`'s filters), `flows/check`,
`flows/explain`,
`policies`, `policies/{namespace}/{name}` (`-` for clusterwide), `policies/validate`,
`whatif`, `impact`, `apply`, `cluster` and `cluster/stream`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from .backend import Backend
from .errors import ApiError
from .flows import observe_request

STATIC = Path(__file__).resolve().parent / "static"
SNAPSHOT_INTERVAL = 2.0
"""Seconds between snapshots of the map and cluster streams (sent only when changed)."""
MIN_INTERVAL = 1.0
"""The map is rebuilt at most this often, whatever the flow rate."""
MAX_BODY = 2 << 20
BACKEND: web.AppKey[Backend] = web.AppKey("backend", Backend)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An ApiError as JSON: `{"error": message, "problems": [{field, description}]}`."""
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response({"error": exc.message, "problems": exc.problems},
                                 status=exc.status)


def _backend(request: web.Request) -> Backend:
    return request.app[BACKEND]


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ApiError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError("the request body must be a JSON object")
    return body


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html")


async def _sse(request: web.Request, events: AsyncIterator[Any]) -> web.StreamResponse:
    """Streams `events` as Server-Sent Events until the browser goes away. An ApiError ends
    the stream with an `error` event (the browser shows it)."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    try:
        async for event in events:
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
    except ApiError as exc:
        error = {"error": exc.message, "problems": exc.problems}
        await response.write(f"event: error\ndata: {json.dumps(error)}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response


async def _snapshots(make: Callable[[], Awaitable[Any]], wait: Callable[[], Awaitable[None]]
                     ) -> AsyncIterator[Any]:
    """`make()` each time `wait()` returns, yielded only when it changed."""
    last = None
    while True:
        snapshot = await make()
        text = json.dumps(snapshot, sort_keys=True)
        if text != last:
            last = text
            yield snapshot
        await wait()


async def service_map(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _backend(request).service_map(
        request.query.get("namespace", "")))


async def map_stream(request: web.Request) -> web.StreamResponse:
    backend, namespace = _backend(request), request.query.get("namespace", "")

    async def pace() -> None:
        """After a new flow, or SNAPSHOT_INTERVAL; never more than one map a MIN_INTERVAL
        however many flows arrive."""
        await asyncio.sleep(MIN_INTERVAL)
        await backend.flows.wait(SNAPSHOT_INTERVAL - MIN_INTERVAL)

    return await _sse(request, _snapshots(lambda: backend.service_map(namespace), pace))


async def flows_stream(request: web.Request) -> web.StreamResponse:
    """Flows as `bulkhead observe --follow` with the query's filters (a bad one is a 400,
    before the stream starts)."""
    flows = observe_request(list(request.query.items()), follow=True)
    return await _sse(request, _backend(request).stream_flows(flows))


async def flows_check(request: web.Request) -> web.StreamResponse:
    """Whether the stream would take these filters (an EventSource cannot read a 400)."""
    observe_request(list(request.query.items()), follow=True)
    return web.json_response({"ok": True})


async def explain(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    flows = body.get("flows")
    if not isinstance(flows, list) or len(flows) > 200:
        raise ApiError("flows: a list of at most 200 flows")
    return web.json_response({"decisions": await _backend(request).explain(flows)})


async def policies(request: web.Request) -> web.StreamResponse:
    return web.json_response({"policies": await _backend(request).policies()})


async def policy(request: web.Request) -> web.StreamResponse:
    namespace = request.match_info["namespace"]
    return web.json_response(await _backend(request).policy_yaml(
        "" if namespace == "-" else namespace, request.match_info["name"]))


async def validate(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    return web.json_response(await _backend(request).validate(str(body.get("yaml", ""))))


async def whatif(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _backend(request).whatif(await _body(request)))


async def impact(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _backend(request).impact(await _body(request)))


async def apply(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _backend(request).apply(await _body(request)))


async def cluster(request: web.Request) -> web.StreamResponse:
    return web.json_response(await _backend(request).cluster())


async def cluster_stream(request: web.Request) -> web.StreamResponse:
    backend = _backend(request)
    return await _sse(request, _snapshots(backend.cluster,
                                          lambda: asyncio.sleep(SNAPSHOT_INTERVAL)))


def make_app(backend: Backend, follow_flows: bool = True) -> web.Application:
    """The console for `backend`; `follow_flows`: keep the recent flows (map, impact)."""
    app = web.Application(middlewares=[errors], client_max_size=MAX_BODY)
    app[BACKEND] = backend

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if follow_flows:
            backend.flows.start()
        yield
        await backend.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/", index)
    app.router.add_static("/static/", STATIC)
    app.router.add_get("/api/map", service_map)
    app.router.add_get("/api/map/stream", map_stream)
    app.router.add_get("/api/flows/stream", flows_stream)
    app.router.add_get("/api/flows/check", flows_check)
    app.router.add_post("/api/flows/explain", explain)
    app.router.add_get("/api/policies", policies)
    app.router.add_get("/api/policies/{namespace}/{name}", policy)
    app.router.add_post("/api/policies/validate", validate)
    app.router.add_post("/api/whatif", whatif)
    app.router.add_post("/api/impact", impact)
    app.router.add_post("/api/apply", apply)
    app.router.add_get("/api/cluster", cluster)
    app.router.add_get("/api/cluster/stream", cluster_stream)
    return app
