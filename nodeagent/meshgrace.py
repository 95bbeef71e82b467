"""Clustermesh sync grace: which remote clusters' unknown identities the datapath lets in.

After an agent or control-plane restart a connected remote cluster's state may still be
syncing (its syncer is listing, or the agent has not received it yet). Traffic from that
cluster's pods then carries identities this node has not heard of, which policy would drop
by default. While a remote cluster is connected but not synced, its cluster id gets a grace
deadline in the datapath's `mesh_grace` map (cluster id -> monotonic ns); overlay ingress
lets such default drops pass until then, with its own flow reason. The grace ends at once
when the remote's state arrives (its `RemoteClusterSync` says ready) and, bounded, when the
deadline passes first (logged as a warning naming the remote). Only a remote's initial sync
gets a grace: one that was ready on this agent and falls out of sync again (its syncer
restarted, or lost the remote etcd) keeps its last-known state in force, whose identities this
node knows, so relaxing policy then would only open a window for no gain.

The agent learns a remote's sync state from the subscription: the control plane sends each
connected remote's `clustermesh/status/<name>` as one small `RemoteClusterSync` (name,
cluster id, ready), in revision order with the mirrored state, so "ready" applied means the
remote's initial state was applied before it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bulkhead import log

_log = log.get(__name__)

NSEC = 1_000_000_000


@dataclass(frozen=True)
class RemoteSync:
    """What the subscription says of one connected remote cluster."""

    name: str
    cluster_id: int
    ready: bool


class SyncGrace:
    """Grace deadlines per remote cluster, kept from the remote clusters' sync records.

    `clock` is monotonic nanoseconds, the clock the datapath reads (bpf_ktime_get_ns)."""

    def __init__(self, grace: float, clock: Callable[[], int] = time.monotonic_ns) -> None:
        if not 0 <= grace < float("inf"):
            raise ValueError("the clustermesh sync grace must be 0 (off) or positive seconds")
        self.grace_ns = int(grace * NSEC)
        self.clock = clock
        self._until: dict[str, tuple[int, int]] = {}   # remote -> (cluster id, deadline ns)
        self._spent: set[str] = set()   # not ready, and its grace ended by timeout
        self._synced: set[str] = set()  # ready at least once since this agent started
        self._known: dict[str, RemoteSync] = {}

    def update(self, remotes: Mapping[str, RemoteSync]) -> None:
        """The connected remote clusters now (all of them: one missing was disconnected)."""
        now = self.clock()
        for name in list(self._known):
            if name not in remotes:
                self._forget(name)
        for name, sync in remotes.items():
            self._known[name] = sync
            if sync.ready:
                if self._until.pop(name, None) is not None:
                    _log.info("clustermesh sync grace ended: remote cluster synced",
                              remote=name, cluster_id=sync.cluster_id)
                self._spent.discard(name)
                self._synced.add(name)
            elif (self.grace_ns and name not in self._until and name not in self._spent
                  and name not in self._synced):
                self._until[name] = (sync.cluster_id, now + self.grace_ns)
                _log.info("clustermesh sync grace started: remote cluster not synced yet",
                          remote=name, cluster_id=sync.cluster_id, seconds=self.grace_ns / NSEC)
            elif name in self._until and self._until[name][0] != sync.cluster_id:
                self._until[name] = (sync.cluster_id, self._until[name][1])

    def expire(self) -> list[str]:
        """Ends the graces whose deadline passed, with a warning each; returns their remotes."""
        now = self.clock()
        ended = [name for name, (_, until) in self._until.items() if until <= now]
        for name in ended:
            cluster_id, _ = self._until.pop(name)
            self._spent.add(name)
            _log.warning("clustermesh sync grace expired before the remote cluster synced: "
                         "traffic from its identities unknown here is dropped by policy now",
                         remote=name, cluster_id=cluster_id, seconds=self.grace_ns / NSEC)
        return ended

    def desired(self) -> dict[int, int]:
        """The datapath map's content: cluster id -> grace deadline (monotonic ns)."""
        return {cluster_id: until for cluster_id, until in self._until.values()}

    def status(self) -> dict[str, float]:
        """Remote -> seconds of grace left (the remotes in grace now)."""
        now = self.clock()
        return {name: max(0, until - now) / NSEC for name, (_, until) in self._until.items()}

    def _forget(self, name: str) -> None:
        self._known.pop(name, None)
        self._until.pop(name, None)
        self._spent.discard(name)
        self._synced.discard(name)
