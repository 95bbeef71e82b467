"""The subscription service's core, independent of gRPC: decide resume or snapshot for a Hello,
queue what the agent must receive first, keep the node's lease alive, record acks."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from bulkhead import log
from bulkhead.errors import FieldViolation, Invalid, NotFound
from bulkhead.v1 import subscription_pb2 as pb
from controlplane.nodes.validate import check_name
from controlplane.records.codec import Node, NodeStatus
from controlplane.store.cache import ClusterCache
from controlplane.store.etcd import Compacted, Etcd, EtcdUnavailable
from controlplane.store.keys import Keys

from . import catchup, framing, trace
from .history import History
from .hub import Hub
from .policy import PolicySource
from .snapshot import Snapshots
from .state import HostSource, ServiceSource, SubscriptionState
from .status import StatusBoard
from .subscriber import Subscriber

_log = log.get(__name__)


@dataclass(frozen=True)
class FanoutSettings:
    history_window: float = 300.0       # seconds of revisions kept for resumes
    queue_bytes: int = 16 << 20         # per subscriber; beyond it: Reset(SLOW_CONSUMER)
    bookmark_interval: float = 30.0
    status_interval: float = 1.0        # etcd status writes, at most once per interval
    node_ttl: int = 15                  # the node lease TTL; renewed every third of it
    linger_per_subscriber: float = 250e-6   # flush interval per subscriber (see hub.py) ...
    max_linger: float = 0.1                 # ... capped here


class Fanout:
    def __init__(self, etcd: Etcd, keys: Keys, cache: ClusterCache, policy: PolicySource,
                 replica: str, settings: FanoutSettings | None = None, *,
                 services: ServiceSource | None = None,
                 host_policies: HostSource | None = None) -> None:
        self.etcd = etcd
        self.keys = keys
        self.cache = cache
        self.replica = replica
        self.settings = settings or FanoutSettings()
        self.history = History(self.settings.history_window)
        self.state = SubscriptionState(keys, policy, self.history, services, host_policies)
        self.snapshots = Snapshots(self.state)
        self.past = catchup.PastReads(etcd, keys)
        self.hub = Hub(self.state, bookmark_interval=self.settings.bookmark_interval,
                       linger_per_subscriber=self.settings.linger_per_subscriber,
                       max_linger=self.settings.max_linger)
        self.board = StatusBoard(etcd, keys, cache, replica,
                                 interval=self.settings.status_interval)
        self._cluster_id = 0
        self._compaction_checks: dict[int, asyncio.Future[bool]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if trace.TRACER is not None:
            trace.TRACER.start()
        self._tasks = [asyncio.create_task(self.hub.bookmarks(), name="sub-bookmarks"),
                       asyncio.create_task(self.board.run(), name="sub-status"),
                       asyncio.create_task(self._trim(), name="sub-history-trim")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sub in list(self.hub.subscribers.values()):
            sub.fail(pb.Reset.UNSPECIFIED, "replica shutting down")
        await self.board.close()

    async def cluster_id(self) -> int:
        if not self._cluster_id:
            self._cluster_id = (await self.etcd.status()).cluster_id
        return self._cluster_id

    # -- a new stream ------------------------------------------------------------------------
    async def open(self, hello: pb.Hello, peer: str) -> Subscriber:
        problems = check_name(hello.node, "hello.node", subdomain=True)
        if hello.HasField("resume") and hello.resume.revision <= 0:
            problems.append(FieldViolation("hello.resume.revision", "must be positive"))
        if problems:
            raise Invalid(problems)
        await self._node_known(hello.node)
        cluster_id = await self.cluster_id()
        reason: tuple[int, str] | None = None
        resume_at = 0
        past: catchup.Past | None = None
        if hello.HasField("resume"):
            token = hello.resume
            if token.etcd_cluster_id != cluster_id:
                reason = (pb.Reset.CLUSTER_ID_CHANGED,
                          f"token is for etcd cluster {token.etcd_cluster_id:x}, "
                          f"this is {cluster_id:x}")
            else:
                await self.cache.wait_for(token.revision, timeout=5.0)
                reason = await self._resumable(token.revision)
                resume_at = token.revision
                if reason is None and not self.history.covers(resume_at):
                    try:
                        past = await self.past.at(resume_at)
                    except Compacted:
                        reason = (pb.Reset.TOO_OLD, f"revision {resume_at} is compacted in etcd")
        # From here on no await: the queue starts exactly where the state is.
        previous = self.board.stored(hello.node)
        sub = Subscriber(hello.node, max_bytes=self.settings.queue_bytes,
                         resumes=previous.resumes if previous else 0,
                         snapshots=previous.snapshots if previous else 0)
        if reason is None and resume_at and self.history.covers(resume_at):
            self._queue_resume(sub, resume_at)
        elif reason is None and past is not None:
            self._queue_catchup(sub, resume_at, past)
        else:
            if reason is not None:
                sub.push_message(pb.ServerMessage(reset=pb.Reset(
                    reason=pb.Reset.Reason.Name(reason[0]), detail=reason[1])).SerializeToString())
            self._queue_snapshot(sub, cluster_id)
        self.hub.add(sub)
        self.board.connected(sub)
        _log.info("agent subscribed", node=sub.node, peer=peer,
                  resumed=reason is None and bool(resume_at), revision=self.state.revision)
        return sub

    def close(self, sub: Subscriber) -> None:
        self.hub.remove(sub)
        self.board.disconnected(sub)
        sub.closed.set()

    def ack(self, sub: Subscriber, revision: int) -> None:
        """Records an ack (the status board picks it up at its next flush); an ack above what
        this stream sent is refused, never recorded: convergence waits believe acks."""
        self._check_sent(sub, "ack", revision)
        sub.ack(revision)

    def nack(self, sub: Subscriber, revision: int, error: str) -> None:
        self._check_sent(sub, "nack", revision)
        _log.warning("agent could not apply a revision", node=sub.node, revision=revision,
                     error=error[:500])

    @staticmethod
    def _check_sent(sub: Subscriber, kind: str, revision: int) -> None:
        if revision > sub.sent_revision:
            _log.warning("agent claimed a revision it was never sent; stream ended",
                         node=sub.node, kind=kind, revision=revision,
                         sent=sub.sent_revision)
            raise Invalid([FieldViolation(f"{kind}.revision", (
                f"revision {revision} was never sent on this stream (newest sent: "
                f"{sub.sent_revision}); the stream is ended and the {kind} not recorded"))])

    async def keep_lease(self, sub: Subscriber, agent_renews: bool = False) -> None:
        """Renews the node's lease while the stream lives; raises NOT_FOUND once it expired.

        An agent that said it renews its own lease (Heartbeat through any replica, so that a
        stalled replica cannot let it expire) is only watched: the stream ends when the node
        is gone, so the agent registers again."""
        period = max(1.0, self.settings.node_ttl / 3)
        while True:
            kv = self.cache.items.get(self.keys.node(sub.node))
            if kv is None:
                raise NotFound(f"node {sub.node!r} is no longer registered; register again")
            if agent_renews:
                await asyncio.sleep(period)
                continue
            try:
                if await self.etcd.keepalive(Node.of_kv(kv).lease) <= 0:
                    raise NotFound(f"node {sub.node!r} lease expired; register again")
            except EtcdUnavailable as exc:
                _log.warning("node lease renewal failed", node=sub.node, error=str(exc))
            await asyncio.sleep(period)

    def statuses(self) -> dict[str, NodeStatus]:
        return self.board.all()

    # -- internals ---------------------------------------------------------------------------
    async def _node_known(self, node: str) -> None:
        """Read-your-writes: the agent may have registered through another replica a moment
        ago, so a node missing from the cache is looked up in etcd before it is refused."""
        key = self.keys.node(node)
        if key in self.cache.items:
            return
        kv = await self.etcd.get(key)
        if kv is None:
            raise NotFound(f"node {node!r} is not registered; register first")
        await self.cache.wait_for(kv.mod_revision, timeout=5.0)
    def _queue_resume(self, sub: Subscriber, revision: int) -> None:
        backlog = self.history.since(revision)
        sub.resumes += 1
        sub.resume_at(revision)
        sub.push_message(pb.ServerMessage(welcome=pb.Welcome(
            replica=self.replica, etcd_cluster_id=self._cluster_id, resumed=True,
            revision=revision)).SerializeToString(), revision)
        for delta in backlog:
            body = delta.body_for(sub.node)
            if body is not None:
                entry = delta.entry if body is delta.shared else None
                sub.push_delta(delta.revision, entry or framing.batch_entry(body))
        # Tell the agent where it stands even when nothing changed since its token.
        sub.push_message(pb.ServerMessage(synced=pb.Synced(
            revision=self.state.revision)).SerializeToString(), self.state.revision)

    def _queue_catchup(self, sub: Subscriber, revision: int, past: catchup.Past) -> None:
        """A resume older than the in-memory history: one delta with what changed since the
        token, derived from etcd's past (catchup.py)."""
        framed = catchup.changes_since(self.state, self.cache.items, past, revision, sub.node,
                                       self.keys)
        now = self.state.revision
        sub.resumes += 1
        sub.resume_at(revision)
        sub.push_message(pb.ServerMessage(welcome=pb.Welcome(
            replica=self.replica, etcd_cluster_id=self._cluster_id, resumed=True,
            revision=revision)).SerializeToString(), revision)
        if framed and now > revision:
            sub.push_delta(now, framing.batch_entry(framing.delta_body(now, framed)))
        sub.push_message(pb.ServerMessage(synced=pb.Synced(revision=now)).SerializeToString(),
                         now)
        _log.info("agent resumed from etcd history", node=sub.node, since=revision,
                  revision=now, changes=len(framed))

    def _queue_snapshot(self, sub: Subscriber, cluster_id: int) -> None:
        revision = self.state.revision
        sub.snapshots += 1
        sub.push_message(pb.ServerMessage(welcome=pb.Welcome(
            replica=self.replica, etcd_cluster_id=cluster_id, resumed=False,
            revision=revision)).SerializeToString())
        for chunk in self.snapshots.shared():
            sub.push_message(chunk)
        for chunk in self.snapshots.for_node(sub.node):
            sub.push_message(chunk)
        sub.push_message(pb.ServerMessage(synced=pb.Synced(revision=revision))
                         .SerializeToString(), revision)

    async def _resumable(self, revision: int) -> tuple[int, str] | None:
        """None when deltas since `revision` can be replayed; else the Reset reason."""
        if revision > self.state.revision:
            return (pb.Reset.TOO_OLD, f"revision {revision} is ahead of this replica "
                                      f"({self.state.revision})")
        if await self._compacted(revision):
            return (pb.Reset.TOO_OLD, f"revision {revision} is compacted in etcd")
        return None

    async def _compacted(self, revision: int) -> bool:
        """One etcd read per distinct revision, shared by agents resuming together."""
        pending = self._compaction_checks.get(revision)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._compaction_checks[revision] = pending
            try:
                await self.etcd.range(self.keys.prefix, revision=revision, limit=1)
                pending.set_result(False)
            except Compacted:
                pending.set_result(True)
            except Exception as exc:
                pending.set_exception(exc)
            finally:
                asyncio.get_running_loop().call_later(1.0, self._compaction_checks.pop,
                                                      revision, None)
        return await asyncio.shield(pending)

    async def _trim(self) -> None:
        while True:
            await asyncio.sleep(min(10.0, max(0.5, self.settings.history_window / 10)))
            self.history.trim()
