"""Endpoint lifecycle on this node: add, delete, and adoption after an agent restart.

AddEndpoint order, each step undone if a later one fails so bad input leaves nothing behind:
local checks (netns path, duplicates) -> the control plane creates the endpoint (validates
labels, assigns IP and identity) -> veth, map entry and programs with both directions enforced
and no entries -> the identity's policy as soon as it has arrived (the call waits briefly for
it, so a pod is normally enforced as intended when AddEndpoint returns).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

import grpc

from bulkhead import log
from bulkhead.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    Invalid,
    NotFound,
    Unavailable,
)
from bulkhead.rpcerror import domain_error
from nodeagent.cpclient import ControlPlaneClient
from nodeagent.datapath import Datapath, EndpointInfo, EndpointSpec, netlink
from nodeagent.endpoints import (
    READY,
    RESTORING,
    WAITING,
    EndpointTable,
    LocalEndpoint,
    Port,
    host_ifname,
    served,
)
from nodeagent.reconciler import PolicyWrite, Reconciler
from nodeagent.worker import Worker

_log = log.get(__name__)


# -- datapath thread --------------------------------------------------------------------------
def plumb(dp: Datapath, spec: EndpointSpec, policy: PolicyWrite | None) -> EndpointInfo:
    try:
        info = dp.add_endpoint(spec)
        if policy is not None:
            dp.sync_policy(spec.ep_id, policy.entries, policy.ingress, policy.egress)
        return info
    except BaseException:
        unplumb(dp, spec.ep_id, spec.host_ifname)
        raise


def unplumb(dp: Datapath, ep_id: int, ifname: str) -> None:
    dp.remove_endpoint(ep_id)
    netlink.delete_link(dp.ipr, ifname)


def adopt(dp: Datapath) -> list[tuple[EndpointInfo, str]]:
    """Pinned endpoints whose veth still exists, with our new programs attached to it.

    The previous agent's programs keep enforcing until the tc filters are replaced (atomically)
    with ours, which share the same pinned maps; only the flow ring buffer is new.  Entries
    whose veth vanished while no agent ran (the pod's namespace was deleted) are removed.
    """
    kept = []
    for info in dp.endpoints():
        name = netlink.link_name(dp.ipr, info.ifindex)
        if name is None:
            dp.remove_endpoint(info.ep_id)
            continue
        dp.attach_endpoint_programs(info.ifindex)
        kept.append((info, name))
    return kept


# -- loop -------------------------------------------------------------------------------------
class EndpointManager:
    def __init__(self, node: str, dp: Datapath, worker: Worker, table: EndpointTable,
                 reconciler: Reconciler, cp: ControlPlaneClient, *, policy_wait: float = 5.0,
                 sync_wait: float = 30.0) -> None:
        self.node = node
        self.dp = dp
        self.worker = worker
        self.table = table
        self.reconciler = reconciler
        self.cp = cp
        self.policy_wait = policy_wait
        self.sync_wait = sync_wait
        self.restored = asyncio.Event()
        self._lock = asyncio.Lock()

    async def add(self, netns_path: str, name: str, namespace: str,
                  labels: list[str], ports: Sequence[Port] = ()) -> LocalEndpoint:
        namespace = namespace or "default"
        problems = []
        if not netns_path:
            problems.append(FieldViolation("netns_path", "required"))
        elif not os.path.exists(netlink.ns_path(netns_path)):
            problems.append(FieldViolation("netns_path", f"{netns_path} does not exist"))
        if not name:
            problems.append(FieldViolation("name", "required"))
        if problems:
            raise Invalid(problems)
        await self._wait_restored()
        async with self._lock:
            existing = self.table.find(namespace, name)
            if existing is not None:
                if (existing.netns_path == netns_path and sorted(existing.labels) ==
                        sorted(labels) and existing.ports == served(ports)):
                    return existing  # a retry
                raise AlreadyExists(f"endpoint {namespace}/{name} already exists on node "
                                     f"{self.node} with a different netns path or labels")
            same_ns = next((e for e in self.table.all() if e.netns_path == netns_path), None)
            if same_ns is not None:
                raise AlreadyExists("invalid request", [FieldViolation(
                    "netns_path", f"{netns_path} already holds endpoint {same_ns.ref}")])
            try:
                created = await self.cp.create(namespace, name, labels, ports=ports)
            except grpc.aio.AioRpcError as exc:
                raise domain_error(exc, "control plane: ") from None
            taken = {info.ep_id for info in await self.worker.run(self.dp.endpoints)}
            ep = LocalEndpoint(
                ep_id=self.table.allocate_id(taken), namespace=namespace, name=name,
                labels=list(labels), identity=created.identity, ip=created.ip,
                host_ifname=host_ifname(self.node, namespace, name), netns_path=netns_path,
                ports=served(created.ports))
            spec = EndpointSpec(ep_id=ep.ep_id, ip=ep.ip, identity=ep.identity,
                                netns=netns_path, host_ifname=ep.host_ifname,
                                ingress_enforced=True, egress_enforced=True)
            self.table.put(ep)
            try:
                await self.worker.run(plumb, self.dp, spec, self.reconciler.policy_write(ep))
            except BaseException as exc:
                self.table.remove(ep.ep_id)
                await self.cp.delete(namespace, name)
                if isinstance(exc, OSError | ValueError | RuntimeError):
                    raise FailedPrecondition(f"plumbing {namespace}/{name} failed: {exc}") from exc
                raise
            ep.status = WAITING
            self.table.save()
            await self.reconciler.apply_endpoint(ep)
        if ep.status != READY:
            await self.reconciler.wait_ready(ep, self.policy_wait)
        _log.info("endpoint added", endpoint=ep.ref, ep_id=ep.ep_id, ip=ep.ip,
                  identity=ep.identity, status=ep.status)
        return ep

    async def delete(self, namespace: str, name: str) -> None:
        namespace = namespace or "default"
        async with self._lock:
            ep = self.table.find(namespace, name)
            if ep is None:
                raise NotFound(f"endpoint {namespace}/{name} is not on node {self.node}")
            await self.worker.run(unplumb, self.dp, ep.ep_id, ep.host_ifname)
            self.table.remove(ep.ep_id)
            self.table.save()
            try:
                await self.cp.delete(namespace, name)
            except grpc.aio.AioRpcError as exc:
                raise domain_error(exc, "control plane: ") from None
        _log.info("endpoint deleted", endpoint=ep.ref, ep_id=ep.ep_id)

    async def _wait_restored(self) -> None:
        try:
            await asyncio.wait_for(self.restored.wait(), self.sync_wait)
        except TimeoutError:
            raise Unavailable("the agent has not synced with the control plane yet") from None

    # -- restart ----------------------------------------------------------------------------
    async def preload(self) -> None:
        """Before subscribing: adopt the pinned endpoints so the first snapshot covers them."""
        saved = self.table.load_records()
        for info, ifname in await self.worker.run(adopt, self.dp):
            rec = saved.get(info.ip, {})
            self.table.put(LocalEndpoint(
                ep_id=info.ep_id, namespace=rec.get("namespace", ""), name=rec.get("name", ""),
                labels=list(rec.get("labels", [])), identity=info.identity, ip=info.ip,
                host_ifname=ifname, netns_path=rec.get("netns_path", ""), status=RESTORING,
                ports=[(str(n), int(p), str(proto)) for n, p, proto in rec.get("ports", [])]))
        if self.table.by_id:
            _log.info("adopted pinned endpoints", count=len(self.table))

    async def restore(self) -> None:
        """After the first sync: names and labels from the control plane; orphans removed.

        An adopted endpoint the control plane no longer knows (the node's lease expired while
        the agent was down) is re-created there with the same IP from the saved record; one
        that nobody can name is removed.  Control-plane endpoints of this node that never
        reached the datapath (an AddEndpoint interrupted by a crash) are deleted.
        """
        async with self._lock:
            known = {e.ip: e for e in await self.cp.node_endpoints()}
            for ep in self.table.all():
                cpe = known.pop(ep.ip, None)
                if cpe is None and ep.name:
                    try:
                        cpe = await self.cp.create(ep.namespace, ep.name, ep.labels, ep.ip,
                                                   ep.ports)
                    except grpc.aio.AioRpcError as exc:
                        _log.warning("could not re-create endpoint", endpoint=ep.ref,
                                     error=exc.details())
                if cpe is None:
                    _log.warning("removing an endpoint nobody knows", ip=ep.ip, ep_id=ep.ep_id)
                    await self.worker.run(unplumb, self.dp, ep.ep_id, ep.host_ifname)
                    self.table.remove(ep.ep_id)
                    continue
                ep.namespace, ep.name, ep.labels = cpe.namespace, cpe.name, list(cpe.labels)
                ep.ports = served(cpe.ports)
                if cpe.identity != ep.identity:
                    ep.identity = cpe.identity
                    await self.worker.run(self.dp.set_identity, ep.ep_id, ep.identity)
                if ep.status == RESTORING:
                    ep.status = WAITING
                await self.reconciler.apply_endpoint(ep)
            for orphan in known.values():
                _log.info("deleting an endpoint that never reached the datapath",
                          endpoint=f"{orphan.namespace}/{orphan.name}")
                await self.cp.delete(orphan.namespace, orphan.name)
            self.table.save()
        self.restored.set()
