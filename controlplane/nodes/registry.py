"""Node registration. A node's id and pod CIDR are kept (unleased) under ipam/ so a node that
comes back keeps them; its record, endpoints and ipcache entries hang on one lease, so a node
gone longer than its TTL disappears with everything it had, in one etcd revision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from bulkhead import log
from bulkhead.errors import (
    Conflict,
    Exhausted,
    FailedPrecondition,
    FieldViolation,
    Invalid,
    NotFound,
)
from controlplane.records.codec import Node, NodeAllocation, NodeLabelChanges
from controlplane.store import etcd as ops
from controlplane.store.cache import ClusterCache
from controlplane.store.etcd import Etcd
from controlplane.store.keys import Keys

from . import labels as nodelabels
from .ipam import ClusterPool
from .validate import check_agent_address, check_ipv4, check_name, dialled_address

VXLAN_PORT = 8472
MAX_NODE_ID = 0xFFFF
_log = log.get(__name__)


class NodeRegistry:
    def __init__(self, etcd: Etcd, keys: Keys, cache: ClusterCache, pool: ClusterPool,
                 ttl: int = 15) -> None:
        self.etcd = etcd
        self.keys = keys
        self.cache = cache
        self.pool = pool
        self.ttl = ttl
        # Allocations this replica proposed that its cache may not show yet (name -> it).
        self._reserved: dict[str, NodeAllocation] = {}

    def nodes(self) -> list[Node]:
        return sorted((Node.of_kv(kv) for kv in self.cache.under(self.keys.nodes)),
                      key=lambda n: n.name)

    def cached(self, name: str) -> Node | None:
        kv = self.cache.items.get(self.keys.node(name))
        return Node.of_kv(kv) if kv else None

    async def get(self, name: str) -> Node:
        kv = await self.etcd.get(self.keys.node(name))
        if kv is None:
            raise NotFound(f"node {name!r} is not registered")
        if (problem := self.cache.records.unreadable(kv.key, kv.value)) is not None:
            # NOT_FOUND like an expired lease: the agent registers again, which rewrites it.
            raise NotFound(f"{problem}; register node {name!r} again")
        return Node.decode(kv.value)

    async def register(self, name: str, underlay_ip: str, agent_address: str = "",
                       labels: Sequence[str] = ()) -> Node:
        agent_labels, label_problems = nodelabels.parse_labels(labels, "labels")
        problems = (check_name(name, "name", subdomain=True)
                    + check_ipv4(underlay_ip, "underlay_ip")
                    + check_agent_address(agent_address, underlay_ip, "agent_address")
                    + label_problems)
        if problems:
            raise Invalid(problems)
        agent_address = dialled_address(agent_address, underlay_ip)
        allocation = await self._allocation(name)
        current = await self.etcd.get(self.keys.node(name))
        lease = 0
        if current is not None and (
                problem := self.cache.records.unreadable(current.key, current.value)):
            _log.warning("replacing an unreadable node record", node=name, problem=problem)
            current = None
        if current is not None:
            old = Node.decode(current.value)
            if await self.etcd.keepalive(old.lease) > 0:
                lease = old.lease
        if lease == 0:
            lease = await self.etcd.grant(self.ttl)
        for _ in range(16):
            changes, unchanged = await self._label_changes(name)
            node = Node(name, allocation.node_id, underlay_ip, allocation.pod_cidr, underlay_ip,
                        VXLAN_PORT, self.keys.cluster, lease, agent_address,
                        nodelabels.effective(name, agent_labels,
                                             nodelabels.as_dict(changes.added), changes.removed),
                        nodelabels.as_strings(agent_labels))
            # Not over a `node label` that lands between the read and the write.
            result = await self.etcd.txn([unchanged], [ops.put(self.keys.node(name),
                                                                node.encode(), lease)])
            if result.succeeded:
                break
        else:
            raise Conflict("node labels kept changing during registration; retry")
        _log.info("node registered", node=name, node_id=node.node_id, pod_cidr=node.pod_cidr,
                  lease=lease)
        return node

    async def _label_changes(self, name: str) -> tuple[NodeLabelChanges, Any]:
        """The operator's label changes of a node and a compare that they are still those."""
        key = self.keys.node_labels(name)
        kv = await self.etcd.get(key)
        if kv is None:
            return NodeLabelChanges(), ops.version_is(key, 0)
        unchanged = ops.mod_revision_is(key, kv.mod_revision)
        if (problem := self.cache.records.unreadable(kv.key, kv.value)) is not None:
            _log.warning("ignoring unreadable node label changes", node=name, problem=problem)
            return NodeLabelChanges(), unchanged
        return NodeLabelChanges.decode(kv.value), unchanged

    async def label(self, name: str, add: Sequence[str], remove: Sequence[str]) -> Node:
        """`bulkhead node label`: sets `add` (`key=value`) and removes `remove` (keys) on a
        registered node, keeps the change for its next registrations, and rewrites its record
        on its own lease in the same transaction (retried if the node re-registers meanwhile).
        """
        added, problems = nodelabels.parse_labels(add, "add")
        for i, key in enumerate(remove):
            problems += nodelabels.check_key(key, f"remove[{i}]")
            if key in added:
                problems.append(FieldViolation(f"remove[{i}]", f"key {key} is also set"))
        if not add and not remove:
            problems.append(FieldViolation("add", "give at least one label to set or remove"))
        if problems:
            raise Invalid(problems)
        for _ in range(16):
            current = await self.etcd.get(self.keys.node(name))
            if current is None:
                raise NotFound(f"node {name!r} is not registered")
            if (problem := self.cache.records.unreadable(current.key, current.value)):
                raise FailedPrecondition(f"{problem}; wait for node {name!r} to register again")
            node = Node.decode(current.value)
            old, _ = await self._label_changes(name)
            kept_added = {k: v for k, v in nodelabels.as_dict(old.added).items()
                          if k not in remove}
            changes = NodeLabelChanges(
                nodelabels.as_strings(kept_added | added),
                tuple(sorted((set(old.removed) - set(added)) | set(remove))))
            labels = nodelabels.effective(name, nodelabels.as_dict(node.agent_labels),
                                          nodelabels.as_dict(changes.added), changes.removed)
            updated = dataclasses.replace(node, labels=labels)
            result = await self.etcd.txn(
                [ops.mod_revision_is(current.key, current.mod_revision)],
                [ops.put(self.keys.node_labels(name), changes.encode()),
                 ops.put(current.key, updated.encode(), node.lease)])
            if result.succeeded:
                _log.info("node labels changed", node=name, labels=",".join(labels))
                return updated
        raise Conflict("node kept changing while its labels were set; retry")

    async def heartbeat(self, name: str) -> int:
        """Renews the node's lease; NOT_FOUND when it expired (the agent must register again).

        The lease id comes from the cache when it has the node (one etcd call per heartbeat,
        not two: every agent sends one every third of the TTL)."""
        cached = self.cached(name)
        node = cached or await self.get(name)
        ttl = await self.etcd.keepalive(node.lease)
        if ttl <= 0 and cached is not None:  # the cache may not show a new registration yet
            ttl = await self.etcd.keepalive((await self.get(name)).lease)
        if ttl <= 0:
            raise NotFound(f"node {name!r} lease expired; register again")
        return ttl

    async def deregister(self, name: str) -> None:
        """Removes the node with its endpoints and ipcache entries, and frees its id and CIDR."""
        self._reserved.pop(name, None)
        kv = await self.etcd.get(self.keys.node_allocation(name))
        node = await self.etcd.get(self.keys.node(name))
        if kv is None and node is None:
            raise NotFound(f"node {name!r} is not registered")
        records = self.cache.records
        if node is not None and records.unreadable(node.key, node.value):
            await self.etcd.txn([], [ops.delete(node.key)])   # its lease is not known
        elif node is not None:
            await self.etcd.revoke(Node.decode(node.value).lease)
        await self.etcd.txn([], [ops.delete(self.keys.node_labels(name))])
        if kv is not None and records.unreadable(kv.key, kv.value):
            # Which id and CIDR it held is lost with it; the claims name the node, though.
            claims = [c.key for prefix in (self.keys.node_ids, self.keys.pod_cidrs)
                      for c in self.cache.under(prefix) if c.value == name.encode()]
            await self.etcd.txn([], [ops.delete(kv.key), *map(ops.delete, claims)])
        elif kv is not None:
            allocation = NodeAllocation.decode(kv.value)
            await self.etcd.txn([], [ops.delete(self.keys.node_allocation(name)),
                                     ops.delete(self.keys.node_id(allocation.node_id)),
                                     ops.delete(self.keys.pod_cidr(allocation.pod_cidr))])
        _log.info("node deregistered", node=name)

    async def _allocation(self, name: str) -> NodeAllocation:
        """The node's id and CIDR: its stored allocation, else the lowest free pair.

        The etcd transaction decides; candidates skip what this replica has proposed and its
        cache does not show yet, so concurrent registrations through one replica do not all
        race for the same id (each loser would wait for the cache and try again).
        """
        key = self.keys.node_allocation(name)
        for _ in range(64):
            kv = await self.etcd.get(key)
            if kv is not None:
                if (problem := self.cache.records.unreadable(kv.key, kv.value)) is not None:
                    raise FailedPrecondition(f"{problem}; deregister node {name!r} to give "
                                              "it a new id and pod CIDR")
                return NodeAllocation.decode(kv.value)
            allocation = self._candidate()
            self._reserved[name] = allocation
            try:
                result = await self.etcd.txn(
                    [ops.version_is(key, 0),
                     ops.version_is(self.keys.node_id(allocation.node_id), 0),
                     ops.version_is(self.keys.pod_cidr(allocation.pod_cidr), 0)],
                    [ops.put(key, allocation.encode()),
                     ops.put(self.keys.node_id(allocation.node_id), name.encode()),
                     ops.put(self.keys.pod_cidr(allocation.pod_cidr), name.encode())],
                )
            except BaseException:
                self._reserved.pop(name, None)
                raise
            if result.succeeded:
                return allocation   # stays reserved until the cache shows it
            self._reserved.pop(name, None)
            await self.cache.wait_for(result.revision, timeout=1.0)
        raise Conflict("node allocation kept conflicting; retry")

    def _candidate(self) -> NodeAllocation:
        prefix = self.keys.node_allocations
        used_cidrs: set[str] = set()
        used_ids: set[int] = set()
        for kv in self.cache.under(prefix):
            allocation = NodeAllocation.decode(kv.value)
            used_cidrs.add(allocation.pod_cidr)
            used_ids.add(allocation.node_id)
        for other in list(self._reserved):
            if self.keys.node_allocation(other) in self.cache.items:
                del self._reserved[other]     # the cache has it now
        used_cidrs |= {a.pod_cidr for a in self._reserved.values()}
        used_ids |= {a.node_id for a in self._reserved.values()}
        cidr = self.pool.free_cidr(used_cidrs)
        node_id = next((i for i in range(1, MAX_NODE_ID + 1) if i not in used_ids), None)
        if cidr is None or node_id is None:
            raise Exhausted(f"cluster pool {self.pool.network} has no free /"
                            f"{self.pool.node_mask} left")
        return NodeAllocation(node_id, cidr)
