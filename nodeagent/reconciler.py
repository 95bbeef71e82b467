"""Keeps the BPF maps equal to what the agent received (the `DatapathSink` of `--datapath=bpf`).

Snapshot chunks are not written one by one: the first Synced (and the Synced after a Reset's
snapshot) reconciles the whole ipcache, every service and every local endpoint's policy at
once, so a restarted agent that adopted pinned maps writes only what changed while it was away
and removes what was not re-sent.  Deltas are written incrementally (a service delta rewrites
only that service's frontends and backends).  Every write goes through the datapath's
diffing syncs, so an entry that is already right is never rewritten.

Default before an endpoint's identity policy has arrived: a new endpoint starts with ingress
and egress enforced and no entries (deny all), like a pod that is not ready yet; a restored
endpoint keeps what its pinned map entries say.  Either way nothing is opened before the
control plane said so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from bulkhead import log
from bulkhead.v1 import subscription_pb2 as pb
from bulkhead.v1 import types_pb2
from nodeagent import desired
from nodeagent.datapath import Datapath, IpcacheEntry, PolicyEntry, ServiceFrontend
from nodeagent.datapath.hostfw import HostDesired
from nodeagent.endpoints import READY, EndpointTable, LocalEndpoint
from nodeagent.fqdn.cache import FqdnCache
from nodeagent.fqdn.expand import expand
from nodeagent.hostpolicy import HostPolicyView
from nodeagent.meshgrace import RemoteSync, SyncGrace
from nodeagent.proxy.rules import L7Entry
from nodeagent.proxy.supervisor import ProxySupervisor
from nodeagent.subscription.state import ReceivedState
from nodeagent.worker import Worker

_log = log.get(__name__)


@dataclass
class PolicyWrite:
    ep_id: int
    entries: list[PolicyEntry]
    ingress: bool
    egress: bool


@dataclass
class Plan:
    """One batch of datapath writes, built on the loop and run on the datapath thread."""

    full_ipcache: list[IpcacheEntry] | None = None
    upserts: list[IpcacheEntry] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    policies: list[PolicyWrite] = field(default_factory=list)
    full_services: list[ServiceFrontend] | None = None
    service_updates: list[tuple[int, list[ServiceFrontend]]] = field(default_factory=list)
    """(service id, all its frontends) to write in place."""
    service_removals: list[int] = field(default_factory=list)
    mesh_grace: dict[int, int] | None = None
    """The clustermesh sync graces (cluster id -> monotonic ns) to write whole."""
    host: HostDesired | None = None
    """The host firewall's maps, whole (they are small), when they change."""

    def __bool__(self) -> bool:
        return bool(self.full_ipcache is not None or self.upserts or self.deletes
                    or self.policies or self.full_services is not None
                    or self.service_updates or self.service_removals
                    or self.mesh_grace is not None or self.host is not None)


def execute(dp: Datapath, plan: Plan) -> tuple[int, list[int]]:
    """Runs on the datapath thread; returns (map writes, endpoint ids whose policy was set)."""
    writes = 0
    if plan.full_ipcache is not None:
        writes += dp.sync_ipcache(plan.full_ipcache)
    if plan.upserts:
        writes += dp.upsert_ipcache(plan.upserts)
    if plan.deletes:
        writes += dp.delete_ipcache(plan.deletes)
    if plan.full_services is not None:
        writes += dp.sync_services(plan.full_services)
    if plan.service_updates or plan.service_removals:
        writes += dp.update_services(plan.service_updates, plan.service_removals)
    if plan.mesh_grace is not None:
        writes += dp.sync_mesh_grace(plan.mesh_grace)
    if plan.host is not None:
        writes += dp.sync_host_policy(plan.host)
    if not plan.policies:
        return writes, []
    # An endpoint missing from the map is being added (the adder applies it) or already gone.
    policy_writes, done = dp.sync_policies(
        (p.ep_id, p.entries, p.ingress, p.egress) for p in plan.policies)
    return writes + policy_writes, done


def _is_cidr(identity: types_pb2.Identity) -> bool:
    return any(label.startswith(desired.CIDR_LABEL) for label in identity.labels)


class Reconciler:
    def __init__(self, node: str, dp: Datapath, worker: Worker, state: ReceivedState,
                 endpoints: EndpointTable, proxy: ProxySupervisor | None = None,
                 dns_port: int = 0) -> None:
        self.node = node
        self.proxy = proxy
        self.proxy_port = proxy.port if proxy is not None else 0
        self.dns_port = dns_port
        """The DNS proxy's transparent sockets (0: pods' DNS is not redirected)."""
        self._l7: list[L7Entry] | None = None
        """The rules the proxy was last given."""
        self.dp = dp
        self.worker = worker
        self.state = state
        self.endpoints = endpoints
        self._applied = 0
        self._applying = False
        self.writes = 0
        self.ready = asyncio.Event()
        """Set once the first snapshot is in the maps."""
        self._full = True
        self._changed = asyncio.Condition()
        self.fqdn: FqdnCache | None = None
        """What the DNS proxy learnt: its IPs join the ipcache and `toFQDNs` entries expand
        to them (nodeagent.fqdn); None: no DNS proxy."""
        self._cidr_ids: set[int] = set()
        self._cidr_prefixes: set[str] = set()
        """CIDR identities and their prefixes, in the ipcache unless a cluster address or a
        learnt one holds the same prefix (desired.cidr_entries)."""
        self.grace: SyncGrace | None = None
        """Clustermesh sync graces kept from `state.remotes` (None: off)."""
        self.host: HostPolicyView | None = None
        """Turns the received host policy into the host firewall's maps; None: no host
        firewall (written with the revision it came in, like every other map)."""
        self._service_ids: dict[str, int] = {}
        """"namespace/name" -> the frontend id its map entries carry (to remove them when the
        service is gone from the received state)."""

    # -- DatapathSink -------------------------------------------------------------------------
    async def apply(self, revision: int, changes: Sequence[pb.Change]) -> None:
        if self.state.in_snapshot or self._full:
            self._full = True  # written as a whole at Synced
            return
        plan = Plan()
        nodes_changed = host_changed = False
        identities: set[int] = set()
        services: dict[str, types_pb2.Service | None] = {}
        for change in changes:
            which = change.WhichOneof("object")
            if which == "ipcache":
                plan.upserts.append(desired.ipcache_entry(change.ipcache, self.node,
                                                          self.state.nodes))
            elif which == "ipcache_removed":
                plan.deletes.append(change.ipcache_removed)
            elif which in ("node", "node_removed"):
                nodes_changed = True
            elif which == "identity" and _is_cidr(change.identity):
                nodes_changed = True  # a policy's CIDR prefix joins the ipcache
            elif which == "identity_removed" and change.identity_removed in self._cidr_ids:
                nodes_changed = True
            elif which == "policy":
                identities.add(change.policy.identity)
            elif which == "service":
                services[f"{change.service.namespace}/{change.service.name}"] = change.service
            elif which == "service_removed":
                services[change.service_removed] = None
            elif which in ("remote_cluster", "remote_cluster_removed"):
                plan.mesh_grace = self._desired_grace()
            elif which == "host_policy":
                host_changed = True
        if self._cidr_prefixes.intersection(plan.deletes):  # a CIDR prefix takes the place
            nodes_changed = True
        if nodes_changed or host_changed:   # node addresses and ids are in the host maps
            plan.host = self._host_desired()
        if nodes_changed:  # tunnel endpoints, remote-node and CIDR entries: recompute (rare)
            plan.full_ipcache, plan.upserts, plan.deletes = self._desired_ipcache(), [], []
        self._service_writes(services, plan)
        for identity in identities:
            plan.policies += self._policy_writes(self.endpoints.with_identity(identity))
        self._applying = True
        try:
            await self._run(plan, revision)
        except BaseException:
            # Not in the maps: the client nacks and subscribes again for a snapshot, which
            # `synced` writes whole; until then the maps are at `_applied`.
            self._full = True
            raise
        finally:
            self._applying = False
        self._applied = max(self._applied, revision)

    async def synced(self, revision: int) -> None:
        if self._full:
            plan = Plan(full_ipcache=self._desired_ipcache(),
                        policies=self._policy_writes(self.endpoints.all()),
                        full_services=self._desired_services(),
                        mesh_grace=self._desired_grace(), host=self._host_desired())
            await self._run(plan, revision)
            self._full = False
            _log.info("datapath reconciled with snapshot", revision=revision,
                      writes=self.writes, endpoints=len(self.endpoints))
        self._applied = max(self._applied, revision)
        self.ready.set()

    @property
    def applied_revision(self) -> int:
        """The revision the maps are up to date with: the last delta or snapshot written, or
        a later revision the subscription reached without a change for this node (bookmarks),
        the revision this agent acks. (Only snapshots moved it once: `agent status` said
        revision 4 while the node acked 315.)"""
        if not self.ready.is_set() or self.state.in_snapshot or self._applying or self._full:
            return self._applied
        return max(self._applied, self.state.revision)

    # -- used by the local API ----------------------------------------------------------------
    def policy_write(self, ep: LocalEndpoint) -> PolicyWrite | None:
        """The endpoint's policy as received, or None while it has not arrived."""
        policy = self.state.policies.get(ep.identity)
        if policy is None:
            return None
        entries = desired.policy_entries(policy, self.proxy_port, self.dns_port)
        if self.fqdn is not None:
            entries = expand(entries, self.state.identities, self.fqdn)
        return PolicyWrite(ep.ep_id, entries, policy.ingress_enforced, policy.egress_enforced)

    async def expire_grace(self) -> list[str]:
        """Ends the clustermesh sync graces that timed out (logged) and removes them from the
        datapath (which stopped honouring them at their deadline already)."""
        if self.grace is None:
            return []
        ended = self.grace.expire()
        if ended and not self._full:
            await self._run(Plan(mesh_grace=self.grace.desired()), self.applied_revision)
        return ended

    def _desired_grace(self) -> dict[int, int] | None:
        if self.grace is None:
            return None
        self.grace.update({name: RemoteSync(name, r.cluster_id, r.ready)
                           for name, r in self.state.remotes.items() if r.cluster_id})
        return self.grace.desired()

    async def fqdn_update(self, fresh: Sequence[str], released: Sequence[str]) -> None:
        """Learnt IPs appeared (`fresh`) or expired (`released`): their ipcache entries and
        every local endpoint's policy, written before the DNS answer goes to the pod."""
        deletes = [f"{ip}/32" for ip in released]
        plan = Plan(upserts=self._fqdn_ipcache(fresh), deletes=deletes,
                    policies=self._policy_writes(self.endpoints.all()))
        if self._cidr_prefixes.intersection(deletes):  # a policy's /32 takes the place back
            plan.full_ipcache, plan.upserts, plan.deletes = self._desired_ipcache(), [], []
        await self._run(plan, self.applied_revision)

    def _fqdn_ipcache(self, ips: Sequence[str] | None = None) -> list[IpcacheEntry]:
        if self.fqdn is None:
            return []
        ids = self.fqdn.ids
        return [IpcacheEntry(f"{ip}/32", ids[ip]) for ip in (ids if ips is None else ips)
                if ip in ids]

    async def apply_endpoint(self, ep: LocalEndpoint) -> None:
        """(Re)writes one endpoint's policy if it is known (after AddEndpoint plumbed it)."""
        await self._run(Plan(policies=self._policy_writes([ep])), self.applied_revision)

    async def wait_ready(self, ep: LocalEndpoint, timeout: float) -> bool:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: ep.status == READY),
                                       timeout)
            except TimeoutError:
                return False
        return True

    # -- internals ----------------------------------------------------------------------------
    def _host_desired(self) -> HostDesired | None:
        """The host firewall's maps when they differ from what was last written."""
        if self.host is None:
            return None
        wanted = self.host.desired(self.state.host_policy, self.state.nodes)
        return None if wanted == self.host.applied else wanted

    def _desired_ipcache(self) -> list[IpcacheEntry]:
        received = desired.ipcache(self.node, self.state.nodes, self.state.ipcache.values())
        known = {e.prefix for e in received}  # a cluster address wins over a learnt one
        out = received + [e for e in self._fqdn_ipcache() if e.prefix not in known]
        known |= {e.prefix for e in out}      # and a learnt address over a policy's /32
        cidrs = desired.cidr_entries(self.state.identities.values())
        self._cidr_ids = {e.identity for e in cidrs}
        self._cidr_prefixes = {e.prefix for e in cidrs}
        return out + [e for e in cidrs if e.prefix not in known]

    def _frontends(self, service: types_pb2.Service) -> list[ServiceFrontend]:
        try:
            return desired.service_frontends(service)
        except ValueError as e:  # the control plane validates; never stop the datapath on one
            _log.warning("service not written to the datapath", error=str(e))
            return []

    def _desired_services(self) -> list[ServiceFrontend]:
        """Every received service's frontends (a frontend two services claim goes to the
        first by name); also resets which id each service's entries carry."""
        self._service_ids = {}
        out: list[ServiceFrontend] = []
        taken: dict[tuple[str, int, int], str] = {}
        for ref, service in sorted(self.state.services.items()):
            if not service.id:
                continue
            self._service_ids[ref] = service.id
            for fe in self._frontends(service):
                owner = taken.setdefault((fe.ip, fe.port, fe.protocol), ref)
                if owner != ref:
                    _log.warning("frontend claimed twice", frontend=f"{fe.ip}:{fe.port}",
                                 service=ref, kept=owner)
                    continue
                out.append(fe)
        return out

    def _service_writes(self, changed: dict[str, types_pb2.Service | None], plan: Plan) -> None:
        """Plan the writes of services that changed (None: removed) in one delta."""
        for ref, service in changed.items():
            old = self._service_ids.pop(ref, None)
            if service is not None and service.id:
                plan.service_updates.append((service.id, self._frontends(service)))
                self._service_ids[ref] = service.id
                if old is not None and old != service.id:
                    plan.service_removals.append(old)
            elif old is not None:
                plan.service_removals.append(old)

    def _policy_writes(self, eps: Sequence[LocalEndpoint]) -> list[PolicyWrite]:
        out = []
        for ep in eps:
            write = self.policy_write(ep)
            if write is not None:
                out.append(write)
        return out

    def desired_l7(self) -> list[L7Entry]:
        """The proxy's rules for every local endpoint whose policy has arrived (`toFQDNs`
        ones for the addresses learnt, as in the policy maps)."""
        entries = desired.l7_entries(
            (ep.ip, policy) for ep in self.endpoints.all()
            if (policy := self.state.policies.get(ep.identity)) is not None)
        if self.fqdn is not None:
            entries = expand(entries, self.state.identities, self.fqdn)
        return entries

    async def push_l7(self, force: bool = False) -> None:
        """Give the proxy its rules when they changed (``force``: again, e.g. to a restarted
        proxy).  Runs before the policy map is written, so a connection the map newly
        redirects finds its rules in the proxy."""
        if self.proxy is None:
            return
        wanted = self.desired_l7()
        if force or wanted != self._l7:
            try:
                await asyncio.to_thread(self.proxy.set_entries, wanted)
            except Exception as e:  # fail closed: redirected traffic fails until it is back
                _log.error("proxy rules not pushed", error=str(e))
                self.proxy.entries = tuple(wanted)  # the supervisor's restart pushes them
                return
            self._l7 = wanted

    async def _run(self, plan: Plan, revision: int) -> None:
        if not plan:
            return
        if plan.policies:
            await self.push_l7()
        try:
            writes, done = await self.worker.run(execute, self.dp, plan)
        except Exception as exc:
            if plan.host is not None and self.host is not None:
                self.host.last_error = f"sync failed: {exc}"
            raise
        if plan.host is not None and self.host is not None:
            self.host.written(plan.host, revision)
            _log.info("host policy applied", ingress=plan.host.ingress_enforced,
                      egress=plan.host.egress_enforced, entries=len(plan.host.entries),
                      revision=revision)
        self.writes += writes
        if done:
            for ep_id in done:
                ep = self.endpoints.by_id.get(ep_id)
                if ep is not None:
                    ep.status = READY
            async with self._changed:
                self._changed.notify_all()
        if writes:
            _log.debug("datapath updated", revision=revision, writes=writes)


