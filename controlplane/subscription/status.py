"""Subscription status in etcd, so every replica can show it and wait on it.

Each replica keeps one record of all the nodes it serves (`<prefix>subscription-replicas/<id>`)
on its own lease, rewritten at most once per interval: one etcd write per replica per second
whatever the number of agents (a key per node cost 1,000 writes/s at 1,000 agents, and every
replica's watch processed each). If the replica dies, its claims vanish with the lease. A node
that disconnects cleanly keeps its final counters under `<prefix>subscriptions/<node>` on the
node's own lease, so they go with the node.
"""

from __future__ import annotations

import asyncio
import contextlib

from bulkhead import log
from controlplane.records.codec import NodeStatus, SubscriptionRecord
from controlplane.store import etcd as ops
from controlplane.store.cache import ClusterCache
from controlplane.store.etcd import Etcd, EtcdUnavailable
from controlplane.store.keys import Keys

from .subscriber import Subscriber

_log = log.get(__name__)


def status_of(sub: Subscriber, replica: str) -> NodeStatus:
    """A live stream's status as `replica` serves it."""
    return NodeStatus(sub.node, replica, sub.connected_since, sub.acked_revision, sub.lag,
                      sub.resumes, sub.snapshots, True, sub.covered_revision)


def _newer(a: NodeStatus | None, b: NodeStatus) -> bool:
    """Whether b describes a later connection than a (a dead replica's record may linger)."""
    if a is None:
        return True
    if a.connected != b.connected:
        return b.connected
    return (b.connected_since, b.acked_revision) > (a.connected_since, a.acked_revision)


class StatusBoard:
    def __init__(self, etcd: Etcd, keys: Keys, cache: ClusterCache, replica: str, *,
                 interval: float = 1.0, ttl: int = 15) -> None:
        self.etcd = etcd
        self.keys = keys
        self.cache = cache
        self.replica = replica
        self.interval = interval
        self.ttl = ttl
        self.prefix = keys.subscription_finals
        self.replica_prefix = keys.subscription_records
        self._streams: dict[str, dict[int, Subscriber]] = {}   # node -> its live streams
        self._gone: set[str] = set()
        # What this replica's record in etcd holds; None: unknown (new lease), write it anew.
        self._written: dict[str, NodeStatus] | None = {}
        self._decoded: dict[str, tuple[int, dict[str, NodeStatus]]] = {}  # key -> (rev, nodes)
        self._lease = 0

    def key(self, node: str) -> str:
        return self.prefix + node

    @property
    def record_key(self) -> str:
        return self.replica_prefix + self.replica

    def stored(self, node: str) -> NodeStatus | None:
        """The node's status as etcd holds it (any replica's record, or its final key)."""
        best: NodeStatus | None = None
        kv = self.cache.items.get(self.key(node))
        if kv is not None:
            best = NodeStatus.of_kv(kv)
        for kv in self.cache.under(self.replica_prefix):
            status = self._record(kv.key, kv.mod_revision, kv.value).get(node)
            if status is not None and _newer(best, status):
                best = status
        return best

    def _stored(self) -> dict[str, NodeStatus]:
        found: dict[str, NodeStatus] = {}
        for kv in self.cache.under(self.prefix):
            status = NodeStatus.of_kv(kv)
            if _newer(found.get(status.name), status):
                found[status.name] = status
        for kv in self.cache.under(self.replica_prefix):
            for status in self._record(kv.key, kv.mod_revision, kv.value).values():
                if _newer(found.get(status.name), status):
                    found[status.name] = status
        return found

    def _record(self, key: str, revision: int, raw: bytes) -> dict[str, NodeStatus]:
        """A replica record's statuses, decoded once per revision of the key."""
        cached = self._decoded.get(key)
        if cached is not None and cached[0] == revision:
            return cached[1]
        nodes = {s.name: s for s in SubscriptionRecord.decode(raw).nodes}
        self._decoded[key] = (revision, nodes)
        for stale in set(self._decoded) - {kv.key for kv in self.cache.under(self.replica_prefix)}:
            del self._decoded[stale]
        return nodes

    @property
    def local(self) -> dict[str, Subscriber]:
        """Per node, its newest live stream on this replica."""
        return {node: list(streams.values())[-1] for node, streams in self._streams.items()}

    def connected(self, sub: Subscriber) -> None:
        self._streams.setdefault(sub.node, {})[id(sub)] = sub
        self._gone.discard(sub.node)

    def disconnected(self, sub: Subscriber) -> None:
        streams = self._streams.get(sub.node, {})
        if streams.pop(id(sub), None) is None:
            return
        if not streams:
            del self._streams[sub.node]
            self._gone.add(sub.node)

    def all(self) -> dict[str, NodeStatus]:
        """Every node's status: this replica's live view over what etcd holds."""
        found = self._stored()
        for node, sub in self.local.items():
            found[node] = status_of(sub, self.replica)
        return found

    async def run(self) -> None:
        renew_every = max(1.0, self.ttl / 3)
        since_renew = 0.0
        while True:
            try:
                if self._lease == 0:
                    self._lease = await self.etcd.grant(self.ttl)
                    if self._written:
                        self._written = None   # the record went with the old lease
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
        # Acks, connects and covered revisions that moved without an ack (revisions that held
        # nothing for a node) all show as a difference from what the record holds.
        local = {node: status_of(sub, self.replica) for node, sub in self.local.items()}
        previous = self._written or {}
        if local != self._written:
            record = SubscriptionRecord(self.replica,
                                        tuple(status for _, status in sorted(local.items())))
            await self.etcd.put(self.record_key, record.encode(), self._lease)
            self._written = local
        await self._write_gone(previous)

    async def _write_gone(self, previous: dict[str, NodeStatus]) -> None:
        """Final status of nodes that left cleanly, on the node's lease (it goes with the
        node), unless the node is already on another replica."""
        gone, self._gone = self._gone, set()
        for node in sorted(gone):
            if node in self._streams:
                continue
            stored = self.stored(node)
            if stored is not None and stored.connected and stored.replica != self.replica:
                continue
            last = previous.get(node) or stored
            if last is None:
                continue
            final = NodeStatus(node, "", "", last.acked_revision, 0, last.resumes,
                               last.snapshots, False, last.acked_revision)
            node_kv = self.cache.items.get(self.keys.node(node))
            with contextlib.suppress(EtcdUnavailable):
                if node_kv is not None:
                    await self.etcd.put(self.key(node), final.encode(), node_kv.lease)
                else:
                    await self.etcd.txn([], [ops.delete(self.key(node))])

    async def close(self) -> None:
        """Graceful stop: drop this replica's claims now rather than at lease expiry."""
        if self._lease:
            with contextlib.suppress(Exception):
                await self.etcd.revoke(self._lease)
