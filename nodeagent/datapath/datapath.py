"""The node's eBPF datapath as one object: what an agent calls.

Every method blocks (bcc compile, map syscalls, netlink) and bcc objects are not
thread-safe: the agent runs every call on one dedicated thread
(nodeagent.worker).  Each sync method writes only the differences between
what it is given and what the pinned maps already hold, and returns how many
map writes that took, so a restarted agent adopts the maps without a gap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from bulkhead.reserved import ID_HOST
from nodeagent.datapath import netlink, proxyroutes
from nodeagent.datapath.flows import DEFAULT_CAPACITY, FlowReader
from nodeagent.datapath.hostfw import HostDesired, HostFirewall
from nodeagent.datapath.layout import CFG_F_FORWARD_UNKNOWN
from nodeagent.datapath.loader import DEFAULT_PIN_ROOT, Loaded, MapSizes, remove_pins
from nodeagent.datapath.maps import (
    ConfigMap,
    CountersMap,
    CtMap,
    EndpointsMap,
    IpcacheMap,
    LbMaps,
    MeshGraceMap,
    PolicyMap,
)
from nodeagent.datapath.models import (
    CounterEntry,
    CtEntry,
    EndpointInfo,
    EndpointSpec,
    Flow,
    IpcacheEntry,
    PolicyEntry,
    PolicyKeyInfo,
    ServiceFrontend,
    TunnelEntry,
)
from nodeagent.datapath.rawmap import diff

DEFAULT_VXLAN_IFNAME = "bh_vxlan"
ENDPOINT_PROGRAMS = (("ingress", "from_pod"), ("egress", "to_pod"))
"""(tc hook, program) pairs on an endpoint's host-side veth."""
OVERLAY_PROGRAMS = (("ingress", "from_overlay"), ("egress", "to_overlay"))
"""(tc hook, program) pairs on the node's VXLAN device."""


class Datapath:
    """BPF programs, pinned maps and plumbing of one node.

    ``netns`` is the node's network namespace (None: the current one).  Maps
    are pinned per ``node`` under ``pin_root``; creating a second Datapath for
    the same node (a restarted agent) adopts them as they are.
    """

    def __init__(
        self,
        node: str,
        *,
        netns: str | None = None,
        pin_root: Path = DEFAULT_PIN_ROOT,
        sizes: MapSizes | None = None,
        flow_capacity: int = DEFAULT_CAPACITY,
    ):
        self.node = node
        self.netns = netns
        self.pin_root = pin_root
        self.loaded = Loaded(node, pin_root, sizes)
        self.ipr = netlink.open_ns(netns)
        m = self.loaded.maps
        self.endpoint_map = EndpointsMap(m["endpoints"])
        self.ipcache_map = IpcacheMap(m["ipcache"])
        self.policy_map = PolicyMap(m["policy"])
        self.ct_map = CtMap(m["ct"])
        self.config_map = ConfigMap(m["config"])
        self.mesh_grace_map = MeshGraceMap(m["mesh_grace"])
        self.lb_maps = LbMaps(m["lb_frontends"], m["lb_backends"])
        self.counters_map = CountersMap(self.loaded.bpf[b"counters"])
        self.flow_reader = FlowReader(self.loaded.bpf, flow_capacity)
        self.host_ips: list[str] = []
        self.host_firewall = HostFirewall(self.loaded)
        """Host policies on the underlay interface (attached by `setup_host_firewall`)."""

    # -- node ---------------------------------------------------------------

    def setup_node(
        self,
        underlay_ip: str,
        *,
        vxlan_ifname: str = DEFAULT_VXLAN_IFNAME,
        vxlan_port: int = netlink.VXLAN_PORT,
        forward_unknown: bool = False,
    ) -> int:
        """Create the external-mode VXLAN device and attach from_overlay (ingress) and
        to_overlay (egress) to it, with the L7 proxy's routing (proxyroutes).

        The node's own underlay IP enters the ipcache as the host identity.
        ``forward_unknown`` hands allowed packets for addresses outside the
        ipcache to the node's routing instead of dropping them.  Returns the
        VXLAN ifindex.
        """
        index = netlink.ensure_vxlan(self.ipr, vxlan_ifname, vxlan_port)
        for hook, prog in OVERLAY_PROGRAMS:
            fd, name = self.loaded.prog(prog)
            netlink.attach(self.ipr, index, hook, fd, name)
        proxyroutes.ensure(self.ipr, self.netns, index)
        self.config_map.set(index, CFG_F_FORWARD_UNKNOWN if forward_unknown else 0)
        self.add_host_ip(underlay_ip)
        return index

    def setup_host_firewall(self, underlay_ip: str) -> int:
        """Attach the host firewall to the underlay interface (it enforces nothing until a
        host policy is synced); returns that interface's index."""
        return self.host_firewall.attach(self.ipr, underlay_ip)

    def sync_host_policy(self, desired: HostDesired) -> int:
        return self.host_firewall.sync(desired)

    def add_host_ip(self, ip: str) -> None:
        """An address of the node itself (underlay, the DNS server's): in the ipcache as the
        host identity, kept there by every ipcache sync."""
        if ip not in self.host_ips:
            self.host_ips.append(ip)
        self.ipcache_map.upsert([IpcacheEntry(f"{ip}/32", ID_HOST)])

    # -- endpoints ----------------------------------------------------------

    def add_endpoint(self, spec: EndpointSpec) -> EndpointInfo:
        """Veth into the pod namespace (IP, routes, gateway neighbour), map entry, programs.

        Idempotent: an existing veth and an already-right map entry are left
        untouched; filters are replaced, never duplicated.
        """
        link = netlink.ensure_endpoint_link(
            self.ipr, spec.host_ifname, spec.netns, spec.pod_ifname, spec.ip, spec.mtu
        )
        existing = self.endpoint_map.get(spec.ip)
        keep = existing if existing is not None and existing.ep_id == spec.ep_id else None

        def flag(wanted: bool | None, current: bool | None) -> bool:
            if wanted is not None:
                return wanted
            return bool(current)

        info = EndpointInfo(
            ip=spec.ip,
            ep_id=spec.ep_id,
            ifindex=link.host_index,
            identity=spec.identity,
            ingress_enforced=flag(spec.ingress_enforced, keep.ingress_enforced if keep else None),
            egress_enforced=flag(spec.egress_enforced, keep.egress_enforced if keep else None),
            pod_mac=link.pod_mac,
            host_mac=link.host_mac,
        )
        self.endpoint_map.put(info)
        self.attach_endpoint_programs(link.host_index)
        return info

    def attach_endpoint_programs(self, ifindex: int) -> None:
        """Attach our programs to an endpoint's host veth, replacing any filters there."""
        for hook, prog in ENDPOINT_PROGRAMS:
            fd, name = self.loaded.prog(prog)
            netlink.attach(self.ipr, ifindex, hook, fd, name)

    def set_identity(self, ep_id: int, identity: int) -> bool:
        """Change the identity in an endpoint's map entry; True if that took a write."""
        info = self.endpoint_map.by_id(ep_id)
        if info is None or info.identity == identity:
            return False
        return self.endpoint_map.put(dataclasses.replace(info, identity=identity))

    def remove_endpoint(self, ep_id: int) -> bool:
        """Undo add_endpoint: map entry, policy keys, counters, the veth pair."""
        info = self.endpoint_map.by_id(ep_id)
        if info is None:
            self.policy_map.remove_endpoint(ep_id)
            return False
        self.endpoint_map.remove(info.ip)
        self.policy_map.remove_endpoint(ep_id)
        self.counters_map.remove_endpoint(ep_id)
        ifname = netlink.link_name(self.ipr, info.ifindex)
        if ifname is not None:
            netlink.delete_link(self.ipr, ifname)
        return True

    def sync_endpoints(self, specs: Iterable[EndpointSpec]) -> list[EndpointInfo]:
        """Make the node's endpoints exactly ``specs`` (restart reconciliation)."""
        specs = list(specs)
        infos = [self.add_endpoint(s) for s in specs]
        wanted = {s.ep_id for s in specs}
        for info in self.endpoint_map.list():
            if info.ep_id not in wanted:
                self.remove_endpoint(info.ep_id)
        for ep_id in self.policy_map.endpoint_ids() - wanted:
            self.policy_map.remove_endpoint(ep_id)
        return infos

    # -- ipcache ------------------------------------------------------------

    def sync_ipcache(self, entries: Iterable[IpcacheEntry]) -> int:
        """Make the ipcache exactly ``entries`` (plus this node's host IPs)."""
        wanted = list(entries)
        wanted.extend(IpcacheEntry(f"{ip}/32", ID_HOST) for ip in self.host_ips)
        return self.ipcache_map.sync(wanted)

    def sync_mesh_grace(self, until: dict[int, int]) -> int:
        """Make the clustermesh sync graces exactly ``until`` (cluster id -> monotonic ns)."""
        return self.mesh_grace_map.sync(until)

    def mesh_grace(self) -> dict[int, int]:
        return self.mesh_grace_map.list()

    def upsert_ipcache(self, entries: Iterable[IpcacheEntry]) -> int:
        return self.ipcache_map.upsert(entries)

    def delete_ipcache(self, prefixes: Iterable[str]) -> int:
        return self.ipcache_map.delete(prefixes)

    # -- policy -------------------------------------------------------------

    def sync_policy(
        self,
        ep_id: int,
        entries: Iterable[PolicyEntry],
        ingress_enforced: bool,
        egress_enforced: bool,
    ) -> int:
        """Make one endpoint's policy exactly ``entries`` with these enforcement flags.

        New keys go in before enforcement is switched on and stale keys go
        out after it is switched off, so no allowed packet is ever dropped
        in between.  Returns the map writes it took.
        """
        info = self.endpoint_map.by_id(ep_id)
        if info is None:
            raise KeyError(f"endpoint {ep_id} is not on this node")
        writes, _ = self._sync_policy(
            info, entries, ingress_enforced, egress_enforced, self.policy_map.current(ep_id)
        )
        return writes

    def sync_policies(
        self, policies: Iterable[tuple[int, Iterable[PolicyEntry], bool, bool]]
    ) -> tuple[int, list[int]]:
        """``sync_policy`` for each (ep_id, entries, ingress, egress), reading each map once.

        Endpoints that are not on this node are skipped.  Returns the map
        writes it took and the endpoint ids whose policy was set.
        """
        infos = {info.ep_id: info for info in self.endpoint_map.list()}
        current = self.policy_map.by_endpoint()
        writes = 0
        done = []
        for ep_id, entries, ingress, egress in policies:
            info = infos.get(ep_id)
            if info is None:
                continue
            n, current[ep_id] = self._sync_policy(
                info, entries, ingress, egress, current.get(ep_id, {})
            )
            infos[ep_id] = dataclasses.replace(
                info, ingress_enforced=ingress, egress_enforced=egress
            )
            writes += n
            done.append(ep_id)
        return writes, done

    def _sync_policy(
        self,
        info: EndpointInfo,
        entries: Iterable[PolicyEntry],
        ingress_enforced: bool,
        egress_enforced: bool,
        current: dict[bytes, bytes],
    ) -> tuple[int, dict[bytes, bytes]]:
        """``sync_policy`` given the endpoint's entry and exactly the keys it holds now;
        returns the writes and the keys it holds afterwards."""
        raw = self.policy_map.raw
        desired = self.policy_map.desired(info.ep_id, entries)
        changed, stale = diff(desired, current)
        if changed:
            raw.update(changed)
        writes = len(changed) + len(stale)
        if (info.ingress_enforced, info.egress_enforced) != (ingress_enforced, egress_enforced):
            self.endpoint_map.put(
                dataclasses.replace(
                    info, ingress_enforced=ingress_enforced, egress_enforced=egress_enforced
                )
            )
            writes += 1
        if stale:
            raw.delete(stale)
        return writes, desired

    # -- services -----------------------------------------------------------

    def sync_services(self, frontends: Iterable[ServiceFrontend]) -> int:
        """Make the service maps hold exactly ``frontends`` (every service); returns writes."""
        writes = self.lb_maps.sync(frontends)
        self._forget_gone_backends()
        return writes

    def update_services(self, updates: Iterable[tuple[int, Iterable[ServiceFrontend]]],
                        removals: Iterable[int] = ()) -> int:
        """Remove services by id, then replace services' frontends and backends (each given
        whole with its id); returns the service map writes it took.

        New connections choose only among the backends given here; a UDP flow remembered on
        a backend its frontend no longer has is forgotten (one conntrack scan for the whole
        batch), so its next packet chooses again; TCP connections keep theirs until they end.
        """
        writes = sum(self.lb_maps.remove_service(service_id) for service_id in removals)
        for service_id, frontends in updates:
            writes += self.lb_maps.update_service(service_id, frontends)
        self._forget_gone_backends()
        return writes

    def update_service(self, service_id: int, frontends: Iterable[ServiceFrontend]) -> int:
        return self.update_services([(service_id, frontends)])

    def remove_service(self, service_id: int) -> int:
        return self.update_services([], [service_id])

    def _forget_gone_backends(self) -> int:
        gone, self.lb_maps.gone = self.lb_maps.gone, set()
        return self.ct_map.forget(gone)

    def services(self) -> list[ServiceFrontend]:
        return self.lb_maps.list()

    # -- dumps --------------------------------------------------------------

    def endpoints(self) -> list[EndpointInfo]:
        return self.endpoint_map.list()

    def ipcache(self) -> list[IpcacheEntry]:
        return self.ipcache_map.list()

    def policy(self, ep_id: int) -> list[PolicyKeyInfo]:
        return self.policy_map.get(ep_id)

    def ct(self) -> list[CtEntry]:
        return self.ct_map.list()

    def tunnels(self) -> list[TunnelEntry]:
        return [
            TunnelEntry(e.prefix, e.tunnel_endpoint, e.identity)
            for e in self.ipcache_map.list()
            if e.tunnel_endpoint
        ]

    def counters(self, ep_id: int | None = None) -> list[CounterEntry]:
        return self.counters_map.list(ep_id)

    def gc_ct(self) -> int:
        return self.ct_map.gc()

    def read_flows(self, timeout_ms: int = 0, last: int | None = None) -> list[Flow]:
        """Drain the ring buffer, then return the newest ``last`` kept flows (all by default)."""
        self.flow_reader.poll(timeout_ms)
        return self.flow_reader.last(last)

    def map_writes(self) -> dict[str, int]:
        """Entries written or deleted per map by this object since it was created."""
        return {name: raw.writes for name, raw in self.loaded.maps.items()}

    # -- lifecycle ----------------------------------------------------------

    def close(self) -> None:
        """Release our handles; attached programs and pinned maps keep enforcing."""
        self.ipr.close()
        self.loaded.close()

    def teardown(self, vxlan_ifname: str = DEFAULT_VXLAN_IFNAME) -> None:
        """Remove everything this node's datapath made: endpoints, VXLAN device, pins."""
        for info in self.endpoint_map.list():
            self.remove_endpoint(info.ep_id)
        netlink.delete_link(self.ipr, vxlan_ifname)
        self.close()
        remove_pins(self.node, self.pin_root)
