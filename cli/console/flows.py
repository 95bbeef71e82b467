"""Flows for the console: `bulkhead observe`'s filters turned into a request, a flow as the
page gets it, and the recent flows of the cluster kept for the map and the impact view."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
from collections import deque
from collections.abc import Iterable
from typing import Any

import grpc

from bulkhead.v1 import flow_pb2, observer_pb2_grpc

from .. import argtypes
from ..commands import observe
from .errors import ApiError

FLOWS_KEPT = 2000
"""Recent flows the console holds for the map and the impact view (a bounded deque)."""
OBSERVE_FILTERS = ("from-label", "to-label", "from-pod", "to-pod", "to-service", "from-ip",
                   "to-ip", "from-identity", "to-identity", "verdict", "port", "protocol",
                   "node", "since", "type", "http-method", "http-path", "http-status", "last")
"""The query parameters of the flows stream: `bulkhead observe`'s flags, without dashes."""


_ARGUMENT = re.compile(r"^argument --([\w-]+)")


def _refused(field: str, message: str, problem: str) -> ApiError:
    """A bad filter, named by its query parameter (the form field the page marks)."""
    return ApiError(message, [{"field": field, "description": problem}])


class _Refused(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # type: ignore[override]
        """argparse's `argument --verdict: invalid choice: ...`, at its field."""
        named = _ARGUMENT.match(message)
        if named is None:
            raise ApiError(message)
        raise _refused(named.group(1), message, message.split(": ", 1)[-1])


def observe_request(params: Iterable[tuple[str, str]], follow: bool) -> flow_pb2.GetFlowsRequest:
    """A GetFlows request from `bulkhead observe`'s own flags and checks (`verdict=DROPPED`
    is `--verdict DROPPED`); a bad value is an ApiError naming its parameter as the field."""
    parser = _Refused(prog="observe", add_help=False)
    observe.register(parser.add_subparsers(parser_class=_Refused))
    argv = ["observe"]
    for key, value in params:
        if key not in OBSERVE_FILTERS:
            raise _refused(key, f"{key}: not a filter of bulkhead observe", "unknown filter")
        if value != "":
            argv += [f"--{key}", value]
    try:
        args = parser.parse_args(argv)
        request = observe.build_request(args)
    except argtypes.BadValue as exc:  # "bulkhead: --since: ..."
        raise _refused(exc.name.removeprefix("--"), f"{exc.name}: {exc.problem}",
                       exc.problem) from None
    request.follow = follow
    return request


def flow_json(flow: flow_pb2.Flow) -> dict[str, Any]:
    """`observe -o json`'s object, with the line `observe` prints and the rule decision the
    datapath recorded."""
    out = observe.as_json(flow)
    out["summary"] = observe.line(flow, node_name=True)
    return out


class FlowCache:
    """The newest FLOWS_KEPT flows of the cluster, followed in the background (one GetFlows
    stream, re-opened after an error); `changed` is set on every new flow."""

    def __init__(self, observer: observer_pb2_grpc.ObserverServiceStub,
                 kept: int = FLOWS_KEPT) -> None:
        self.observer = observer
        self.flows: deque[dict[str, Any]] = deque(maxlen=kept)
        self.changed = asyncio.Event()
        self.error = ""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self) -> None:
        kept = self.flows.maxlen or FLOWS_KEPT
        while True:
            try:
                request = flow_pb2.GetFlowsRequest(last=kept, follow=True)
                first = True
                async for flow in self.observer.GetFlows(request):
                    if first:   # a re-opened stream sends the held flows again
                        self.flows.clear()
                        first = False
                    self.flows.append(flow_json(flow))
                    self.error = ""
                    self.changed.set()
            except grpc.aio.AioRpcError as exc:
                self.error = exc.details() or str(exc.code())
            await asyncio.sleep(1.0)

    async def wait(self, timeout: float) -> None:
        """Until a new flow arrives or `timeout` passes."""
        self.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.changed.wait(), timeout)
