"""Per-node subscription status in etcd, so every replica can show it and wait on it.

One key per node (`<prefix>subscriptions/<node>`, not subscription content) bound to this
replica's lease: if the replica dies, its claims vanish with the lease. Writes are batched
(one flush per interval, ≤ 128 puts per transaction) so acks never turn into an etcd write each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import asdict, dataclass

from aetcd import rpc  # type: ignore[import-untyped]

from bulkhead import log
from controlplane.store import etcd as ops
from controlplane.store.cache import ClusterCache
from controlplane.store.etcd import Etcd, EtcdUnavailable
from controlplane.store.keys import Keys

from .subscriber import Subscriber

_log = log.get(__name__)
MAX_TXN_OPS = 128


@dataclass(frozen=True)
class NodeStatus:
    name: str
    replica: str = ""
    connected_since: str = ""
    acked_revision: int = 0
    lag_revisions: int = 0
    resumes: int = 0
    snapshots: int = 0
    connected: bool = False
    covered_revision: int = 0

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @staticmethod
    def from_json(raw: bytes) -> NodeStatus:
        return NodeStatus(**json.loads(raw))

    @staticmethod
    def of(sub: Subscriber, replica: str) -> NodeStatus:
        return NodeStatus(sub.node, replica, sub.connected_since, sub.acked_revision, sub.lag,
                          sub.resumes, sub.snapshots, True, sub.covered_revision)


def status_prefix(keys: Keys) -> str:
    return f"{keys.prefix}subscriptions/"


class StatusBoard:
    def __init__(self, etcd: Etcd, keys: Keys, cache: ClusterCache, replica: str, *,
                 interval: float = 1.0, ttl: int = 15) -> None:
        self.etcd = etcd
        self.keys = keys
        self.cache = cache
        self.replica = replica
        self.interval = interval
        self.ttl = ttl
        self.prefix = status_prefix(keys)
        self._streams: dict[str, dict[int, Subscriber]] = {}   # node -> its live streams
        self._dirty: set[str] = set()
        self._gone: set[str] = set()
        self._covered: dict[str, int] = {}   # node -> covered revision last written
        self._lease = 0

    def key(self, node: str) -> str:
        return self.prefix + node

    def stored(self, node: str) -> NodeStatus | None:
        kv = self.cache.items.get(self.key(node))
        try:
            return NodeStatus.from_json(kv.value) if kv else None
        except (ValueError, TypeError):
            return None

    @property
    def local(self) -> dict[str, Subscriber]:
        """Per node, its newest live stream on this replica."""
        return {node: list(streams.values())[-1] for node, streams in self._streams.items()}

    def connected(self, sub: Subscriber) -> None:
        self._streams.setdefault(sub.node, {})[id(sub)] = sub
        self._gone.discard(sub.node)
        self._dirty.add(sub.node)

    def changed(self, sub: Subscriber) -> None:
        self._dirty.add(sub.node)

    def disconnected(self, sub: Subscriber) -> None:
        streams = self._streams.get(sub.node, {})
        if streams.pop(id(sub), None) is None:
            return
        if streams:
            self._dirty.add(sub.node)
        else:
            del self._streams[sub.node]
            self._dirty.discard(sub.node)
            self._gone.add(sub.node)

    def all(self) -> dict[str, NodeStatus]:
        """Every node's status: this replica's live view over what etcd holds."""
        found: dict[str, NodeStatus] = {}
        for kv in self.cache.under(self.prefix):
            try:
                status = NodeStatus.from_json(kv.value)
            except (ValueError, TypeError):
                continue
            found[status.name] = status
        for node, sub in self.local.items():
            found[node] = NodeStatus.of(sub, self.replica)
        return found

    async def run(self) -> None:
        renew_every = max(1.0, self.ttl / 3)
        since_renew = 0.0
        while True:
            try:
                if self._lease == 0:
                    self._lease = await self.etcd.grant(self.ttl)
                    self._dirty |= set(self.local)
                elif since_renew >= renew_every:
                    since_renew = 0.0
                    if await self.etcd.keepalive(self._lease) <= 0:
                        self._lease = 0
                        continue
                await self.flush()
            except (EtcdUnavailable, Exception) as exc:  # keep publishing once etcd is back
                _log.warning("subscription status flush failed", error=str(exc))
            await asyncio.sleep(self.interval)
            since_renew += self.interval

    async def flush(self) -> None:
        local = self.local
        # A node whose revisions held nothing for it never acks; its covered revision still
        # advances, and waiters on other replicas read it from here.
        for node, sub in local.items():
            if self._covered.get(node) != sub.covered_revision:
                self._dirty.add(node)
        dirty, self._dirty = self._dirty, set()
        gone, self._gone = self._gone, set()
        for node in gone:
            self._covered.pop(node, None)
        statuses = [NodeStatus.of(local[node], self.replica) for node in sorted(dirty)
                    if node in local]
        puts = [ops.put(self.key(status.name), status.to_json(), self._lease)
                for status in statuses]
        try:
            for i in range(0, len(puts), MAX_TXN_OPS):
                await self.etcd.txn([], puts[i:i + MAX_TXN_OPS])
        except Exception:
            self._dirty |= dirty
            raise
        for status in statuses:
            self._covered[status.name] = status.covered_revision
        for node in sorted(gone):
            previous = self.stored(node)
            if previous is None or previous.replica != self.replica:
                continue
            final = NodeStatus(node, "", "", previous.acked_revision, 0, previous.resumes,
                               previous.snapshots, False, previous.acked_revision)
            # Kept on the node's lease (it goes with the node), and only if the key is still
            # ours: the agent may already be on another replica.
            node_kv = self.cache.items.get(self.keys.node(node))
            write = (ops.put(self.key(node), final.to_json(), node_kv.lease) if node_kv
                     else ops.delete(self.key(node)))
            with contextlib.suppress(EtcdUnavailable):
                await self.etcd.txn(
                    [rpc.Compare(key=self.key(node).encode(), result=rpc.Compare.EQUAL,
                                 target=rpc.Compare.LEASE, lease=self._lease)], [write])

    async def close(self) -> None:
        """Graceful stop: drop this replica's claims now rather than at lease expiry."""
        if self._lease:
            with contextlib.suppress(Exception):
                await self.etcd.revoke(self._lease)
