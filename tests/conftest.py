"""Shared fixtures: a real etcd (the Debian binary, on free ports) and in-process replicas."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from controlplane.app import ControlPlane
from controlplane.config import Config
from controlplane.server import build_server
from integration.etcd_process import EtcdProcess, etcd_process


@pytest.fixture(scope="session")
def etcd() -> Iterator[EtcdProcess]:
    """One etcd for the session; tests isolate themselves by cluster name."""
    with etcd_process() as server:
        yield server


@pytest.fixture
def cluster_name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@dataclass
class Replica:
    cp: ControlPlane
    server: grpc.aio.Server
    address: str

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.address)

    async def stop(self) -> None:
        await self.server.stop(grace=0.5)
        await self.cp.stop()


ReplicaFactory = Callable[..., Awaitable[Replica]]


async def start_replica(config: Config) -> Replica:
    return await start_replica_on(config, 0)


async def start_replica_on(config: Config, port: int) -> Replica:
    """A replica serving on `port` (0: any free one)."""
    cp = ControlPlane(config)
    await cp.start()
    server, bound = await build_server(cp, f"127.0.0.1:{port}")
    await server.start()
    return Replica(cp, server, f"127.0.0.1:{bound}")


@pytest.fixture
async def replicas(etcd: EtcdProcess, cluster_name: str) -> AsyncIterator[ReplicaFactory]:
    """Starts control-plane replicas in this process against the session etcd."""
    started: list[Replica] = []

    async def factory(**overrides: object) -> Replica:
        config = Config(etcd_endpoints=[etcd.endpoint], cluster_name=cluster_name,
                        state_dir=Path(tempfile.gettempdir()), **overrides)  # type: ignore[arg-type]
        replica = await start_replica(config)
        started.append(replica)
        return replica

    try:
        yield factory
    finally:
        for replica in started:
            with contextlib.suppress(Exception):
                await replica.stop()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0,
                     interval: float = 0.1) -> bool:
    """Polls `check` until it is true or the timeout passes (for lease expiry and GC)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if await check():
            return True
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(interval)
