"""`bulkhead-agent --datapath=bpf`: the pieces wired together, and their background loops.

Start-up order matters for a restart without a gap: load the programs against the pinned
maps (nothing is cleared), set up the node, adopt the pinned endpoints (re-attaching our
programs), and only then subscribe, so the first snapshot is reconciled against everything the
previous agent left and only differences are written.  The local API serves from the start;
AddEndpoint waits until the snapshot is in the maps.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import grpc

from bulkhead import log, tls
from bulkhead.reserved import ID_HOST, RESERVED_BY_ID, reserved_labels
from bulkhead.rpcguard import guarded
from bulkhead.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    connectivity_pb2_grpc,
    fqdn_pb2_grpc,
    hostpolicy_pb2,
)
from nodeagent import apiports, metrics
from nodeagent.connectivityapi import ConnectivityAgentService
from nodeagent.cpclient import ControlPlaneClient
from nodeagent.credentials import NodeCredentials
from nodeagent.datapath import Datapath, Flow
from nodeagent.dns.listen import Listen
from nodeagent.dns.proxy import Client, DnsProxy
from nodeagent.dns.server import DnsServer, ensure_local_address
from nodeagent.dns.transparent import DEFAULT_PORT as DEFAULT_DNS_PROXY_PORT
from nodeagent.dns.transparent import TransparentDns
from nodeagent.dns.upstream import Upstream, Upstreams
from nodeagent.endpoints import EndpointTable
from nodeagent.flowstore import FlowStore, ServiceNames
from nodeagent.fqdn.cache import LOCAL_IDENTITY_BASE, FqdnCache
from nodeagent.fqdn.service import FqdnService
from nodeagent.hostpolicy import HostPolicyView
from nodeagent.localapi import AgentService
from nodeagent.manager import EndpointManager
from nodeagent.meshgrace import SyncGrace
from nodeagent.proxy.supervisor import DEFAULT_PORT as DEFAULT_PROXY_PORT
from nodeagent.proxy.supervisor import ProxySupervisor
from nodeagent.reconciler import Reconciler
from nodeagent.subscription.client import SubscriptionClient
from nodeagent.subscription.state import ReceivedState
from nodeagent.testpods import TestPods
from nodeagent.worker import Worker

_log = log.get(__name__)

@dataclass
class Settings:
    node: str
    controlplane: list[str]
    underlay_ip: str
    socket: Path
    netns: str | None
    pin_root: Path
    flows_max: int = 4095
    ct_gc_interval: float = 30.0
    flow_poll_interval: float = 0.05
    ack_interval: float = 0.05
    endpoints_file: Path | None = None
    api_listen: str | None = "127.0.0.1:0"
    """Also serve the API on TCP for the control plane's flow relay (registered as the node's
    agent_address); None: the unix socket only."""
    metrics_listen: str | None = None
    """Serve Prometheus /metrics on HOST:PORT; None: off."""
    metrics_interval: float = 2.0
    """Seconds between map-pressure reads on the datapath thread (only with metrics on)."""
    dns_listen: Listen | None = None
    """Serve cluster DNS to the node's pods on this address in the node namespace; None: off."""
    dns_upstream: Listen | None = None
    """The resolver names outside the cluster go to (reached from the node namespace); None:
    they get NXDOMAIN."""
    dns_proxy_port: int = DEFAULT_DNS_PROXY_PORT
    """The DNS proxy's transparent sockets (127.0.0.1, node namespace, UDP and TCP): the
    datapath redirects there port 53 of the pods under `rules.dns`, whatever server they ask
    (only with `dns_listen`); 0: not redirected (only queries to `dns_listen` are seen)."""
    fqdn_min_ttl: int = 0
    """Seconds a learnt address is kept at least (Cilium's --tofqdns-min-ttl; 0: the TTL)."""
    fqdn_file: Path | None = None
    """Where the FQDN cache is kept across restarts (default: the socket path, .fqdn.json)."""
    fqdn_interval: float = 0.5
    """Seconds between expiry checks of learnt addresses."""
    proxy_port: int = DEFAULT_PROXY_PORT
    """The L7 proxy's listener port in the node namespace; 0: no proxy (L7 allow entries are
    then left out of the maps: their traffic is denied, never let through unchecked)."""
    proxy_interval: float = 1.0
    """Seconds between checks that the proxy is alive (a dead one is restarted)."""
    node_labels: list[str] = field(default_factory=list)
    """`key=value` labels the node registers with (`--node-labels` and the automatic ones)."""
    mesh_sync_grace: float = 30.0
    """Seconds a connected remote cluster that has not synced yet gets a grace for its
    identities this node has not heard of (nodeagent/meshgrace.py); 0: off."""
    grace_interval: float = 1.0
    """Seconds between checks for sync graces that timed out (to log and remove them)."""
    credentials: NodeCredentials | None = None
    """--tls: the node certificate (obtained in `run`), for every connection to the control
    plane and the TCP API."""


def default_socket(node: str) -> Path:
    return Path(f"/run/bulkhead/agent-{node}.sock")


def _drain(dp: Datapath, pending: list[Flow]) -> list[Flow]:
    """Datapath thread: consume the ring buffer; the listener appended to ``pending``."""
    dp.flow_reader.poll(0)
    out = pending[:]
    pending.clear()
    return out


class BpfAgent:
    def __init__(self, settings: Settings, worker: Worker, dp: Datapath) -> None:
        self.settings = s = settings
        self.node = s.node
        self.worker = worker
        self.dp = dp
        self._pending: list[Flow] = []
        self.dp.flow_reader.listeners.append(self._pending.append)
        self.state = ReceivedState()
        self.table = EndpointTable(s.endpoints_file or s.socket.with_suffix(".endpoints.json"))
        self.proxy = (ProxySupervisor(s.socket.with_suffix(".proxy.sock"), netns=s.netns,
                                      port=s.proxy_port) if s.proxy_port else None)
        self.reconciler = Reconciler(s.node, self.dp, self.worker, self.state, self.table,
                                     self.proxy, s.dns_proxy_port if s.dns_listen else 0)
        if s.mesh_sync_grace:
            self.reconciler.grace = SyncGrace(s.mesh_sync_grace)
        self.credentials = s.credentials
        pem = s.credentials.current if s.credentials is not None else None
        self.cp = ControlPlaneClient(s.node, s.controlplane, credentials=pem)
        self.fqdn = (FqdnCache(s.fqdn_file or s.socket.with_suffix(".fqdn.json"),
                               s.fqdn_min_ttl) if s.dns_listen is not None else None)
        self.reconciler.fqdn = self.fqdn
        self.dns_upstream: Upstream | None = None
        self.manager = EndpointManager(s.node, self.dp, self.worker, self.table,
                                       self.reconciler, self.cp)
        self.testpods = TestPods(s.node, s.netns, s.underlay_ip, self.manager, self.table,
                                 s.socket.parent)
        self.flows = FlowStore(s.node, s.flows_max, self.labels, self._pod,
                               ServiceNames(self.state.services), self._endpoint,
                               self._node_of)
        self.client = SubscriptionClient(
            s.node, s.controlplane, underlay_ip=s.underlay_ip, state=self.state,
            sink=self.reconciler, capabilities=["datapath:bpf"], ack_interval=s.ack_interval,
            on_registered_again=self._restore, credentials=pem, node_labels=s.node_labels)
        self.server: grpc.aio.Server | None = None
        self.pressure = metrics.PressureSnapshot()
        self.metrics_server: WSGIServer | None = None
        self.dns: DnsServer | None = None
        self.dns_redirect: TransparentDns | None = None
        self.dns_upstreams: Upstreams | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.host_policy = HostPolicyView(
            s.node, s.controlplane,
            services=[(s.dns_listen.ip, s.dns_listen.port)] if s.dns_listen else [])
        self.reconciler.host = self.host_policy

    @classmethod
    async def create(cls, settings: Settings) -> BpfAgent:
        """Loads the datapath on its own thread (compiling takes seconds) and wires the rest."""
        s = settings
        worker = Worker()
        # The flow window is kept by FlowStore (enriched); the reader's own deque holds one.
        dp = await worker.run(lambda: Datapath(s.node, netns=s.netns, pin_root=s.pin_root,
                                               flow_capacity=1))
        return cls(settings, worker, dp)

    def labels(self, identity: int) -> list[str]:
        if identity >= LOCAL_IDENTITY_BASE and self.fqdn is not None:
            learnt = self.fqdn.identity_of(identity)
            return (["reserved:world", *(f"fqdn:{n}" for n in sorted(learnt[1]))]
                    if learnt is not None else ["reserved:world"])
        found = self.state.identities.get(identity)
        if found is not None:
            return list(found.labels)
        return list(reserved_labels(identity)) if identity in RESERVED_BY_ID else []

    def _pod(self, ip: str) -> tuple[str, str] | None:
        ep = self.table.by_ip(ip)
        return (ep.namespace, ep.name) if ep is not None and ep.name else None

    def _node_of(self, ip: str, identity: int) -> str:
        """The node whose address `ip` is: this one for the host identity, else the node
        received with that underlay address."""
        if identity == ID_HOST:
            return self.settings.node
        return next((n.name for n in self.state.nodes.values() if n.underlay_ip == ip), "")

    def _endpoint(self, ip: str) -> tuple[int, int] | None:
        ep = self.table.by_ip(ip)
        return (ep.ep_id, ep.identity) if ep is not None else None

    async def start(self) -> None:
        s = self.settings
        # As in Cilium, an address outside the ipcache is `world`: allowed traffic to it
        # leaves through the node's own routing (no tunnel), never dropped as unknown.
        await self.worker.run(functools.partial(self.dp.setup_node, s.underlay_ip,
                                                forward_unknown=True))
        await self.worker.run(self.dp.setup_host_firewall, s.underlay_ip)
        if self.proxy is not None:
            # Before the subscription, so the first snapshot's rules reach it before the maps.
            try:
                await asyncio.to_thread(self.proxy.start)
            except Exception as e:  # L3/L4 still runs; L7 connections fail until it starts
                _log.error("proxy did not start; retrying", error=str(e))
        await self.manager.preload()
        if self.fqdn is not None:
            # Before the subscription: the first snapshot's maps keep the learnt addresses.
            restored = self.fqdn.load()
            if restored:
                _log.info("fqdn cache restored", addresses=len(restored))
        if s.dns_listen is not None:
            # Before the subscription: its first ipcache sync keeps the DNS address as host.
            await self._serve_dns(s.dns_listen)
        await self._serve()
        # Before the subscription: the first snapshot's host maps keep these open.
        await self.host_policy.prepare()
        self._tasks = [
            asyncio.create_task(self.client.run(), name="subscription"),
            asyncio.create_task(self._restore(), name="restore"),
            asyncio.create_task(self._clean_test_pods(), name="test-pod-cleanup"),
            asyncio.create_task(self._poll_flows(), name="flows"),
            asyncio.create_task(self._gc_ct(), name="ct-gc"),
        ]
        if self.reconciler.grace is not None:
            self._tasks.append(asyncio.create_task(self._expire_grace(), name="mesh-grace"))
        if self.fqdn is not None:
            self._tasks.append(asyncio.create_task(self._expire_fqdn(), name="fqdn-expiry"))
        if self.proxy is not None:
            self._tasks.append(asyncio.create_task(self._supervise_proxy(), name="proxy"))
        if self.credentials is not None:
            self._tasks.append(asyncio.create_task(self.credentials.keep_renewed(
                s.controlplane, self._renewed), name="node-cert-renewal"))
        if s.metrics_listen:
            await self._serve_metrics(s.metrics_listen)
        _log.info("agent started", datapath="bpf", socket=str(s.socket), netns=s.netns or "",
                  api=self.client.agent_address, metrics=self.metrics_address,
                  dns=str(s.dns_listen) if s.dns_listen else "off",
                  pins=str(self.dp.loaded.pins), boot_id=self.flows.boot_id)

    async def _serve(self) -> None:
        path = self.settings.socket
        self.server = grpc.aio.server()
        # Undecodable requests are answered INVALID_ARGUMENT, as on the control plane.
        service = AgentService(self.node, worker=self.worker, dp=self.dp, table=self.table,
                               manager=self.manager, flows=self.flows, labels=self.labels,
                               status=self.status)
        # The TCP port answers only the control plane (apiports), the socket only root.
        agent_pb2_grpc.add_AgentServiceServicer_to_server(
            service, apiports.ControlPlaneOnly(guarded(self.server)))
        connectivity_pb2_grpc.add_ConnectivityServiceServicer_to_server(
            ConnectivityAgentService(self.node, self.testpods),
            apiports.ControlPlaneOnly(guarded(self.server)))
        fqdn_pb2_grpc.add_FqdnServiceServicer_to_server(
            FqdnService(self.node, self.fqdn), apiports.ControlPlaneOnly(guarded(self.server)))
        apiports.bind_unix(self.server, path)
        listen = self.settings.api_listen
        if listen:
            host = listen.rpartition(":")[0]
            port = apiports.bind_tcp(self.server, listen, self._node_pem
                                     if self.credentials is not None else None)
            self.client.agent_address = f"{host}:{port}"
        await self.server.start()
        apiports.secure_socket(path)

    def _node_pem(self) -> tls.Pem:
        assert self.credentials is not None and self.credentials.current is not None
        return self.credentials.current

    def _renewed(self, pem: tls.Pem) -> None:
        self.client.use_credentials(pem)
        self.cp.use_credentials(pem)

    @property
    def metrics_address(self) -> str:
        if self.metrics_server is None:
            return ""
        host, port = self.metrics_server.server_address[:2]
        return f"{host!s}:{port}"

    async def _serve_metrics(self, listen: str) -> None:
        self.pressure = await self.worker.run(metrics.read_pressure, self.dp)
        collector = metrics.AgentCollector(
            flows=self.flows, endpoints=self.table,
            applied_revision=lambda: self.reconciler.applied_revision,
            pressure=lambda: self.pressure,
            proxy=(lambda: proxy.last_stats) if (proxy := self.proxy) is not None else None)
        self.metrics_server = metrics.serve(collector, listen)
        self._tasks.append(asyncio.create_task(self._refresh_pressure(), name="map-pressure"))

    async def _serve_dns(self, listen: Listen) -> None:
        """Cluster DNS for this node's pods, answered from the services held in memory."""
        netns = self.settings.netns
        added = await self.worker.run(ensure_local_address, netns, listen.ip)
        await self.worker.run(self.dp.add_host_ip, listen.ip)
        upstream = self.settings.dns_upstream
        if upstream is not None:
            self.dns_upstream = Upstream(upstream)
            await self.dns_upstream.start(netns)
        redirect = self.settings.dns_proxy_port
        if redirect:
            self.dns_upstreams = Upstreams(netns)
        proxy = DnsProxy(listen, lambda: self.state.services, self._dns_client,
                         self.dns_upstream, self._learn, self.flows.add_dns,
                         upstreams=self.dns_upstreams)
        self.dns = DnsServer(listen, lambda: self.state.services, proxy.handle)
        await self.dns.start(netns)
        if redirect:
            self.dns_redirect = TransparentDns(redirect, proxy.handle)
            await self.dns_redirect.start(netns)
        _log.info("dns serving", address=str(listen), netns=netns or "",
                  address_added=added, transports="udp,tcp",
                  upstream=str(upstream) if upstream else "none",
                  redirect_port=redirect or "off")

    def _dns_client(self, ip: str) -> Client | None:
        """The local endpoint a query came from, with its identity's rules.dns patterns."""
        ep = self.table.by_ip(ip)
        if ep is None:
            return None
        policy = self.state.policies.get(ep.identity)
        return Client(f"{ep.namespace}/{ep.name}" if ep.name else ip, ep.ep_id,
                      tuple(policy.dns_patterns) if policy is not None else ())

    async def _learn(self, client: Client, name: str, ips: list[str], ttl: int) -> None:
        """An answer's addresses into the cache, and (when that changes what toFQDNs allows)
        into the maps, before the answer goes out."""
        assert self.fqdn is not None
        fresh, changed = self.fqdn.learn(client.endpoint, client.endpoint_id, name, ips, ttl)
        if fresh or changed:
            await self.reconciler.fqdn_update(fresh, [])

    async def _expire_fqdn(self) -> None:
        """Learnt addresses past their TTL leave the maps (new connections to them are denied
        from then on); the cache file follows every change."""
        assert self.fqdn is not None
        while True:
            await asyncio.sleep(self.settings.fqdn_interval)
            released, expired = self.fqdn.expire()
            if expired and self.reconciler.ready.is_set():
                await self.reconciler.fqdn_update([], released)
            if self.fqdn.dirty:
                try:
                    await asyncio.to_thread(self.fqdn.save)
                except OSError as exc:
                    _log.warning("fqdn cache not saved", error=str(exc))

    async def _expire_grace(self) -> None:
        """Clustermesh sync graces end at their deadline in the datapath; this logs each
        (naming the remote) and removes its map entry."""
        while True:
            await asyncio.sleep(self.settings.grace_interval)
            await self.reconciler.expire_grace()

    async def _refresh_pressure(self) -> None:
        """Map counts need the datapath thread; the scrape thread reads this snapshot."""
        while True:
            await asyncio.sleep(self.settings.metrics_interval)
            self.pressure = await self.worker.run(metrics.read_pressure, self.dp)

    async def wait(self) -> None:
        """Returns when a background task fails (it should not)."""
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()

    async def stop(self) -> None:
        if self.dns is not None:
            await self.dns.close()
        if self.dns_redirect is not None:
            await self.dns_redirect.close()
        if self.dns_upstream is not None:
            self.dns_upstream.close()
        if self.dns_upstreams is not None:
            self.dns_upstreams.close()
        if self.fqdn is not None:
            with contextlib.suppress(OSError):
                self.fqdn.save()
        if self.server is not None:
            await self.server.stop(grace=1.0)
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.cp.close()
        if self.proxy is not None:  # it keeps enforcing until the next agent adopts it
            await asyncio.to_thread(self.proxy.detach)
        # Programs and pinned maps stay: enforcement continues until the next agent adopts them.
        await self.worker.run(self.dp.close)
        self.worker.shutdown()
        with contextlib.suppress(FileNotFoundError):
            self.settings.socket.unlink()

    async def _restore(self) -> None:
        """Names the adopted endpoints and re-creates in the control plane those it lost: at
        start, and again whenever the node had to register again (its lease had expired)."""
        await self.reconciler.ready.wait()
        while True:
            try:
                await self.manager.restore()
                return
            except grpc.aio.AioRpcError as exc:
                _log.warning("endpoint restore failed; retrying", error=exc.details())
                await asyncio.sleep(1.0)

    async def _clean_test_pods(self) -> None:
        """Leftovers of a connectivity test this agent (or its predecessor) did not finish:
        removed once the adopted endpoints are restored."""
        await self.manager.restored.wait()
        try:
            await self.testpods.cleanup()
        except Exception as e:  # the next `connectivity test` cleans up again
            _log.warning("test pod cleanup failed", error=str(e))

    async def _poll_flows(self) -> None:
        interval = self.settings.flow_poll_interval
        while True:
            raws = await self.worker.run(_drain, self.dp, self._pending)
            if raws:
                self.flows.add(raws)
            await asyncio.sleep(interval)

    async def _supervise_proxy(self) -> None:
        """Restart a dead proxy (the supervisor re-arms it with the last rules) and move the
        flows it recorded into the flow store."""
        assert self.proxy is not None
        proxy = self.proxy
        last_check = 0.0
        loop = asyncio.get_running_loop()
        while True:
            if loop.time() - last_check >= self.settings.proxy_interval:
                last_check = loop.time()
                try:
                    if await asyncio.to_thread(proxy.ensure):
                        _log.warning("proxy restarted", restarts=proxy.restarts)
                except Exception as e:  # keep trying; redirected traffic fails meanwhile
                    _log.error("proxy restart failed", error=str(e))
            flows = await asyncio.to_thread(proxy.flows)
            if flows:
                self.flows.add_l7(flows)
            await asyncio.sleep(self.settings.flow_poll_interval * 2)

    async def proxy_status(self) -> agent_pb2.ProxyStatus | None:
        if self.proxy is None:
            return None
        try:
            stats = await asyncio.to_thread(self.proxy.stats)
        except Exception:
            return agent_pb2.ProxyStatus(running=False, restarts=self.proxy.restarts)
        return agent_pb2.ProxyStatus(
            running=True, pid=stats["pid"], listeners=stats["listeners"],
            open_connections=stats["open_connections"],
            requests_allowed=stats["requests_allowed"], requests_denied=stats["requests_denied"],
            restarts=stats["restarts"], rule_entries=stats["entries"], adopted=stats["adopted"])

    async def _gc_ct(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ct_gc_interval)
            removed = await self.worker.run(self.dp.gc_ct)
            if removed:
                _log.debug("conntrack entries expired", removed=removed)

    async def host_firewall_status(self) -> hostpolicy_pb2.HostFirewallStatus:
        fw = self.dp.host_firewall
        ingress, egress = await self.worker.run(fw.flags)
        hp = self.host_policy
        return hostpolicy_pb2.HostFirewallStatus(
            attached=fw.ifindex is not None, ifindex=fw.ifindex or 0,
            ingress_enforced=ingress, egress_enforced=egress, entries=hp.entries,
            always_allowed=hp.always_allowed(), revision=hp.revision,
            last_error=hp.last_error)

    async def status(self) -> agent_pb2.AgentStatusResponse:
        pressure = await self.worker.run(metrics.read_pressure, self.dp)
        s = self.settings
        return agent_pb2.AgentStatusResponse(
            node=s.node, datapath="bpf", controlplane=",".join(s.controlplane),
            connected=self.client.synced.is_set(),
            applied_revision=self.reconciler.applied_revision, endpoints=len(self.table),
            flows_seen=self.flows.sequence, flows_held=len(self.flows.flows),
            flows_max=s.flows_max, map_entries=pressure.entries,
            map_max=pressure.max_entries,
            boot_id=self.flows.boot_id, synced=self.reconciler.ready.is_set(),
            underlay_ip=s.underlay_ip, netns=s.netns or "", last_error=self.client.last_error,
            flows_sequence=self.flows.sequence, map_writes=await self.worker.run(
                self.dp.map_writes), proxy=await self.proxy_status(),
            host_firewall=await self.host_firewall_status())


async def run(settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main_pid = os.getpid()

    def on_signal(signum: int, frame: object) -> None:
        # Not loop.add_signal_handler: pyroute2 forks helpers to enter network namespaces, and
        # a signal such a child receives would reach our loop through the inherited wakeup fd.
        if os.getpid() == main_pid:
            loop.call_soon_threadsafe(stop.set)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    if settings.credentials is not None:
        await settings.credentials.obtain()
    agent = await BpfAgent.create(settings)
    try:
        await agent.start()
        stopped = asyncio.create_task(stop.wait())
        failed = asyncio.create_task(agent.wait())
        await asyncio.wait([stopped, failed], return_when=asyncio.FIRST_COMPLETED)
        if failed.done():
            failed.result()
        failed.cancel()
    finally:
        await agent.stop()
        _log.info("agent stopped")
