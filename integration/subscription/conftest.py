from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest

from bulkhead.v1 import subscription_pb2 as pb
from nodeagent.subscription.client import SubscriptionClient

from .cluster import Cluster

WAIT = 30.0   # an upper bound for waits, never a latency assertion


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster() as c:
        yield c


class Agent:
    """An in-process simulated agent that records every delta it applied."""

    def __init__(self, node: str, addresses: Sequence[str], ip: str, *,
                 first: int = 0, register: bool = True) -> None:
        self.deltas: list[tuple[int, list[pb.Change]]] = []
        self.client = SubscriptionClient(node, addresses, underlay_ip=ip,
                                         backoff=(0.1, 1.0), on_applied=self._applied,
                                         register=register)
        self.client._index = first
        self.task: asyncio.Task[None] | None = None

    def _applied(self, revision: int, changes: Sequence[pb.Change], at: float) -> None:
        if changes:
            self.deltas.append((revision, list(changes)))

    async def start(self) -> Agent:
        self.task = asyncio.create_task(self.client.run())
        await asyncio.wait_for(self.client.synced.wait(), WAIT)
        return self

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None


@pytest.fixture
async def agents() -> AsyncIterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        await agent.stop()


async def eventually(predicate: Callable[[], bool | Awaitable[bool]],
                     message: str = "condition not reached", *, timeout: float = WAIT,
                     interval: float = 0.05) -> None:
    """Waits until `predicate()` (a plain or an async function) is true; fails with `message`
    once `timeout` passes. An upper bound for a wait, never a latency assertion."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(interval)


async def fresh_content(address: str, node: str, ip: str) -> dict[str, object]:
    """What a new agent of `node` receives from a snapshot on `address`."""
    agent = Agent(node, [address], ip, register=False)
    await agent.start()
    try:
        return agent.client.state.content()
    finally:
        await agent.stop()
