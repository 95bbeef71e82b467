"""A real etcd and real control-plane replicas (separate processes) for subscription tests
and the fan-out benchmark. Everything started here is stopped and removed by `close()`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bulkhead import tls as btls
from bulkhead.v1 import (
    endpoint_pb2,
    endpoint_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
    types_pb2,
)
from controlplane.store.embedded import EmbeddedEtcd
from controlplane.store.etcd import Etcd

BIN = Path(sys.executable).parent


@dataclass
class Replica:
    name: str
    process: asyncio.subprocess.Process
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class Cluster:
    def __init__(self, *, base: Path | None = None, tls: bool = False) -> None:
        """`tls`: replicas as they run by default (mutual TLS, authorization), this cluster's
        own calls with the first replica's admin credential; otherwise `--insecure`."""
        self.tls = tls
        self.admin: btls.Credentials | None = None
        self.tag = uuid.uuid4().hex[:8]
        self.cluster_name = f"t{self.tag}"
        self.dir = Path(tempfile.mkdtemp(prefix=f"bulkhead-sub-{self.tag}-", dir=base))
        self.etcd_server = EmbeddedEtcd(self.dir / "etcd", name=f"etcd-{self.tag}")
        self.replicas: dict[str, Replica] = {}
        self.etcd: Etcd | None = None
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def __aenter__(self) -> Cluster:
        try:
            await self.etcd_server.start()
            self.etcd = Etcd([self.etcd_server.endpoint])
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start_replica(self, name: str, *extra: str, timeout: float = 30.0,
                            command: Sequence[str] = (), port: int = 0) -> Replica:
        """``command``: what runs instead of bulkhead-controlplane, taking its flags (the
        fan-out benchmark's traced replica); ``port``: listen there (a restart in place)."""
        port_file = self.dir / f"{name}.port"
        port_file.unlink(missing_ok=True)
        log = (self.dir / f"{name}.log").open("ab")
        process = await asyncio.create_subprocess_exec(
            *(command or [str(BIN / "bulkhead-controlplane")]),
            "--etcd-endpoints", self.etcd_server.endpoint,
            "--listen", f"127.0.0.1:{port}", "--port-file", str(port_file),
            "--cluster-name", self.cluster_name, "--replica-id", f"{name}-{self.tag}",
            "--state-dir", str(self.dir / name), *([] if self.tls else ["--insecure"]), *extra,
            stdout=log, stderr=log, env={**os.environ, "BULKHEAD_LOG_LEVEL": "info"})
        log.close()
        replica = Replica(name, process, 0)
        self.replicas[name] = replica
        deadline = asyncio.get_running_loop().time() + timeout
        while not port_file.exists():
            if process.returncode is not None or asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"replica {name} did not start; see {self.dir / name}.log")
            await asyncio.sleep(0.05)
        replica.port = int(port_file.read_text())
        if self.tls and self.admin is None:   # written before the port file
            self.admin = btls.Credentials.admin_in(self.dir / name)
        health = health_pb2_grpc.HealthStub(self.channel(replica.address))
        # wait_for_ready: a channel to an address restarted in place may be in reconnect backoff.
        await health.Check(health_pb2.HealthCheckRequest(), timeout=timeout, wait_for_ready=True)
        return replica

    async def terminate(self, name: str) -> None:
        """A graceful stop (SIGTERM, as a rolling upgrade does), waiting for the exit."""
        replica = self.replicas[name]
        with contextlib.suppress(ProcessLookupError):
            replica.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(replica.process.wait(), 30)

    def kill(self, name: str) -> None:
        replica = self.replicas[name]
        with contextlib.suppress(ProcessLookupError):
            replica.process.send_signal(signal.SIGKILL)

    def channel(self, address: str) -> grpc.aio.Channel:
        """One channel per address: a connection per call would cost the benchmark's writer
        a TCP and HTTP/2 handshake per change."""
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = btls.aio_channel(address, self.admin)
        return channel

    # -- cluster operations through the gRPC API ---------------------------------------------
    async def register(self, address: str, node: str, ip: str) -> types_pb2.Node:
        stub = node_pb2_grpc.NodeServiceStub(self.channel(address))
        return await stub.Register(node_pb2.RegisterNodeRequest(name=node, underlay_ip=ip),
                                   timeout=10)

    async def create_endpoint(self, address: str, node: str, name: str,
                              labels: list[str]) -> types_pb2.Endpoint:
        stub = endpoint_pb2_grpc.EndpointServiceStub(self.channel(address))
        return await stub.Create(endpoint_pb2.CreateEndpointRequest(
            node=node, namespace="default", name=name, labels=labels), timeout=10)

    async def delete_endpoint(self, address: str, name: str) -> None:
        stub = endpoint_pb2_grpc.EndpointServiceStub(self.channel(address))
        await stub.Delete(endpoint_pb2.DeleteEndpointRequest(namespace="default", name=name),
                          timeout=10)

    async def subscriptions(self, address: str) -> dict[str, subscription_pb2.NodeSubscription]:
        stub = subscription_pb2_grpc.SubscriptionAdminServiceStub(self.channel(address))
        response = await stub.ListSubscriptions(subscription_pb2.ListSubscriptionsRequest(),
                                                timeout=10)
        return {s.name: s for s in response.subscriptions}

    async def revision(self) -> int:
        assert self.etcd is not None
        return (await self.etcd.status()).revision

    async def close(self) -> None:
        for channel in self._channels.values():
            with contextlib.suppress(Exception):
                await channel.close()
        for replica in self.replicas.values():
            if replica.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    replica.process.terminate()
                try:
                    await asyncio.wait_for(replica.process.wait(), 5)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        replica.process.kill()
                    await replica.process.wait()
        if self.etcd is not None:
            await self.etcd.close()
        await self.etcd_server.stop()
        if os.environ.get("BULKHEAD_KEEP_TEST_DIRS"):
            print(f"kept {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
