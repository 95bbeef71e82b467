"""Subscribes to the control plane and keeps `ReceivedState` (and the datapath) current.

Registers the node, subscribes with its resume token (etcd cluster id, last applied
revision), applies and acks; on any failure moves to the next control-plane address after a
jittered backoff, so a replica that dies costs one reconnect with deltas only.

A client that registers its node also keeps the node's lease alive itself (`LeaseKeeper`):
a Heartbeat every third of the TTL, through the stream's replica or, when that one does not
answer in time, through any other. A replica that stalls (SIGSTOP, a blocked event loop) keeps
its TCP connections open, so without this probe the stream would look healthy while the lease
ran out; with it the agent renews through another replica and moves its stream there. When the
lease did expire (every replica stalled), the node is registered again at once and
`on_registered` lets the agent re-create what the control plane lost.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from bulkhead import log, tls
from bulkhead.v1 import node_pb2, node_pb2_grpc, subscription_pb2_grpc
from bulkhead.v1 import subscription_pb2 as pb
from nodeagent.sink import DatapathSink, NullSink

from .lease import CAPABILITY, LeaseKeeper
from .state import ReceivedState

_log = log.get(__name__)

CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),        # a silently dead server is noticed in < 30 s
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 8 << 20),
    ("grpc.use_local_subchannel_pool", 1),     # one connection per agent, even in one process
]

Applied = Callable[[int, Sequence[pb.Change], float], None]
Registered = Callable[[], Coroutine[Any, Any, None]]


class Interrupted(Exception):
    """The lease keeper ended the stream: its replica stalled, or the node must register."""


@dataclass
class Stats:
    connects: int = 0
    resumes: int = 0
    snapshots: int = 0
    resets: int = 0
    deltas: int = 0
    replica: str = ""
    registrations: int = 0
    interruptions: int = 0


class SubscriptionClient:
    def __init__(self, node: str, addresses: Sequence[str], *, underlay_ip: str = "",
                 state: ReceivedState | None = None, sink: DatapathSink | None = None,
                 capabilities: Sequence[str] = (), ack_interval: float = 0.05,
                 backoff: tuple[float, float] = (0.2, 5.0), register: bool = True,
                 on_applied: Applied | None = None, agent_address: str = "",
                 on_registered_again: Registered | None = None,
                 credentials: tls.Material | None = None,
                 node_labels: Sequence[str] = ()) -> None:
        if not addresses:
            raise ValueError("at least one control-plane address is needed")
        self.node = node
        self.addresses = list(addresses)
        self.underlay_ip = underlay_ip
        self.agent_address = agent_address
        self.node_labels = list(node_labels)
        """`key=value` labels the node registers with (host policies select nodes by them)"""
        self.state = state or ReceivedState()
        self.sink = sink or NullSink()
        self.capabilities = list(capabilities)
        self.ack_interval = ack_interval
        self.backoff = backoff
        self.register = register
        self.on_applied = on_applied
        self.on_registered_again = on_registered_again
        """Called (in the background) after the node had to be registered again: the control
        plane lost it with its endpoints, which the agent can re-create."""
        self.token: pb.ResumeToken | None = None
        self.cluster_id = 0
        self.stats = Stats()
        self.synced = asyncio.Event()
        self.last_error = ""
        self._index = random.randrange(len(self.addresses))
        self._need_register = register
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.credentials = credentials   # None: plaintext (without --tls)
        self._retired: list[grpc.aio.Channel] = []
        self.lease = LeaseKeeper(node, self.addresses, self._channel)
        self._address: str | None = None     # the replica of the current stream
        self._prefer: str | None = None      # where the next stream goes (a replica that
        self._interrupt = asyncio.Event()    # answered the heartbeat its own did not)
        self._interrupt_reason = ""
        self._background: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Runs until cancelled."""
        self.synced.clear()
        delay = self.backoff[0]
        keeper = asyncio.create_task(self._keep_lease(), name="lease") if self.register else None
        try:
            while True:
                if self._prefer is not None and self._prefer in self.addresses:
                    self._index = self.addresses.index(self._prefer)
                self._prefer = None
                address = self.addresses[self._index % len(self.addresses)]
                healthy = False
                try:
                    healthy = await self._session(address)
                except Interrupted as exc:
                    self.last_error = str(exc)
                    self.stats.interruptions += 1
                    healthy = True   # no backoff: another replica answered, or re-register
                    _log.warning("subscription interrupted", address=address, reason=str(exc))
                except grpc.aio.AioRpcError as exc:
                    self.last_error = f"{exc.code().name}: {exc.details()}"
                    if exc.code() == grpc.StatusCode.NOT_FOUND:
                        self._need_register = self.register
                    _log.info("subscription ended", address=address, error=self.last_error)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # sink failures, network errors: start over
                    self.last_error = str(exc)
                    _log.warning("subscription failed", address=address, error=str(exc))
                self.synced.clear()
                self._index += 1
                if healthy:
                    delay = self.backoff[0]
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                if not healthy:
                    delay = min(delay * 2, self.backoff[1])
        finally:
            self._address = None
            for task in [keeper, *self._background]:
                if task is not None:
                    task.cancel()
            await self.close()

    async def _keep_lease(self) -> None:
        """Renews the node's lease every third of its TTL (see lease.py); a stream whose
        replica did not answer in time is moved to the replica that did."""
        while True:
            current = self._address
            if current is None or self._need_register:
                await asyncio.sleep(0.1)   # no stream yet, or registering (renews it too)
                continue
            renewal = await self.lease.renew(current)   # the first one learns the TTL
            if self._address != current:
                continue   # the stream moved meanwhile
            if renewal.expired:
                self._need_register = self.register
                self._stop_stream(f"node {self.node} lease expired; registering again")
            elif renewal.address is None:
                _log.warning("no control-plane replica renewed the node lease in time",
                             ttl=self.lease.ttl)
            elif renewal.address != current:
                self._prefer = renewal.address
                self._stop_stream(f"replica {current} did not answer a heartbeat within "
                                  f"{self.lease.deadline:.1f} s; moving to {renewal.address}")
            await asyncio.sleep(self.lease.period)

    def _stop_stream(self, reason: str) -> None:
        self._interrupt_reason = reason
        self._interrupt.set()

    async def close(self) -> None:
        for channel in [*self._channels.values(), *self._retired]:
            await channel.close()
        self._channels.clear()
        self._retired.clear()

    def use_credentials(self, credentials: tls.Material) -> None:
        """A renewed certificate: new connections present it; the open stream keeps its
        connection (and its TLS session), so it is not dropped. Old channels are closed
        with the client."""
        self.credentials = credentials
        self._retired.extend(self._channels.values())
        self._channels = {}

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = tls.aio_channel(
                address, self.credentials, options=CHANNEL_OPTIONS)
        return channel

    # -- one stream --------------------------------------------------------------------------
    async def _session(self, address: str) -> bool:
        """One stream on `address`; returns whether it reached Synced before it ended."""
        channel = self._channel(address)
        self._interrupt.clear()
        self._address = address
        if self._need_register:
            await node_pb2_grpc.NodeServiceStub(channel).Register(
                node_pb2.RegisterNodeRequest(name=self.node, underlay_ip=self.underlay_ip,
                                             agent_address=self.agent_address,
                                             labels=self.node_labels),
                timeout=10)
            self._need_register = False
            self.stats.registrations += 1
            if self.stats.registrations > 1 and self.on_registered_again is not None:
                task = asyncio.create_task(self.on_registered_again(), name="re-registered")
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        outbox: asyncio.Queue[pb.AgentMessage | None] = asyncio.Queue()
        capabilities = [*self.capabilities, CAPABILITY] if self.register else self.capabilities
        hello = pb.Hello(node=self.node, capabilities=capabilities)
        if self.token is not None:
            hello.resume.CopyFrom(self.token)
        outbox.put_nowait(pb.AgentMessage(hello=hello))

        async def requests() -> AsyncIterator[pb.AgentMessage]:
            while (message := await outbox.get()) is not None:
                yield message

        call = subscription_pb2_grpc.SubscriptionServiceStub(channel).Subscribe(requests())
        self.stats.connects += 1
        acker = _Acker(outbox, self.ack_interval)
        reached = [False]

        async def consume() -> None:
            async for message in call:
                reached[0] = await self._handle(message, acker) or reached[0]

        reader = asyncio.create_task(consume())
        interrupted = asyncio.create_task(self._interrupt.wait())
        try:
            await asyncio.wait([reader, interrupted], return_when=asyncio.FIRST_COMPLETED)
            if not reader.done():
                raise Interrupted(self._interrupt_reason)
            reader.result()
        finally:
            reader.cancel()
            interrupted.cancel()
            await asyncio.wait([reader, interrupted])
            await acker.stop()
            outbox.put_nowait(None)   # end the request generator before cancelling the call
            await asyncio.sleep(0)
            call.cancel()
        return reached[0]

    async def _handle(self, message: pb.ServerMessage, acker: _Acker) -> bool:
        which = message.WhichOneof("msg")
        state = self.state
        if which == "deltas":
            for delta in message.deltas.deltas:
                await self._apply(delta.revision, delta.changes, acker)
                self.stats.deltas += 1
            acker.ack(self._advance(message.deltas.deltas[-1].revision))
        elif which == "snapshot":
            for change in message.snapshot.objects:
                state.apply(change)
            await self.sink.apply(message.snapshot.revision, message.snapshot.objects)
        elif which == "synced":
            revision = message.synced.revision
            if state.in_snapshot:
                removed = state.end_snapshot(revision)
                if removed:
                    await self.sink.apply(revision, removed)
                if self.on_applied is not None:
                    self.on_applied(revision, [], time.time())
            await self.sink.synced(revision)
            self.token = pb.ResumeToken(etcd_cluster_id=self.cluster_id, revision=revision)
            acker.ack(self._advance(revision))
            self.synced.set()
            return True
        elif which == "bookmark":
            acker.ack(self._advance(message.bookmark.revision))
        elif which == "welcome":
            welcome = message.welcome
            self.stats.replica = welcome.replica
            self.cluster_id = welcome.etcd_cluster_id
            if welcome.resumed:
                self.stats.resumes += 1
            else:
                self.stats.snapshots += 1
                self.token = None   # until Synced: a half-received snapshot is no position
                state.begin_snapshot()
        elif which == "reset":
            self.stats.resets += 1
            self.token = None
            _log.info("subscription reset", reason=pb.Reset.Reason.Name(message.reset.reason),
                      detail=message.reset.detail)
        return False

    async def _apply(self, revision: int, changes: Sequence[pb.Change], acker: _Acker) -> None:
        for change in changes:
            self.state.apply(change)
        self.state.revision = revision
        try:
            await self.sink.apply(revision, changes)
        except Exception as exc:
            # The datapath could not take it: say so, and start over from a snapshot.
            acker.outbox.put_nowait(pb.AgentMessage(nack=pb.Nack(revision=revision,
                                                                 error=str(exc)[:1000])))
            self.token = None
            raise
        if self.on_applied is not None:
            self.on_applied(revision, changes, time.time())

    def _advance(self, revision: int) -> int:
        self.state.revision = max(self.state.revision, revision)
        if self.token is not None:
            self.token.revision = self.state.revision
        return self.state.revision


class _Acker:
    """Coalesces acks: at most one per interval, always the latest revision."""

    def __init__(self, outbox: asyncio.Queue[pb.AgentMessage | None], interval: float) -> None:
        self.outbox = outbox
        self.interval = interval
        self.latest = 0
        self.sent = 0
        self._task: asyncio.Task[None] | None = None

    def ack(self, revision: int) -> None:
        self.latest = max(self.latest, revision)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self.latest > self.sent:
            self.sent = self.latest
            self.outbox.put_nowait(pb.AgentMessage(ack=pb.Ack(revision=self.sent)))
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        """Cancels a pending flush and waits until it has ended."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])  # never raises the task's CancelledError into ours
