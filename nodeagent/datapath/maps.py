"""Typed views of the pinned maps: encode/decode entries and write only differences."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from typing import Any

from nodeagent.datapath import policykeys
from nodeagent.datapath.layout import (
    CONFIG_VAL,
    CT_KEY,
    CT_NAT_HAIRPIN,
    CT_NAT_PROXY_UPSTREAM,
    CT_NAT_REVERSE,
    CT_NAT_SERVICE,
    CT_NAT_TO_PROXY,
    CT_VAL,
    EP_F_EGRESS_ENFORCED,
    EP_F_INGRESS_ENFORCED,
    EP_KEY,
    EP_VAL,
    IPCACHE_KEY,
    IPCACHE_VAL,
    LB_BE_KEY,
    LB_BE_VAL,
    LB_F_AFFINITY,
    LB_FE_KEY,
    LB_FE_VAL,
    MESH_GRACE_KEY,
    MESH_GRACE_VAL,
    Direction,
    Reason,
)
from nodeagent.datapath.models import (
    Backend,
    CounterEntry,
    CtEntry,
    EndpointInfo,
    IpcacheEntry,
    PolicyEntry,
    PolicyKeyInfo,
    ServiceFrontend,
)
from nodeagent.datapath.rawmap import RawMap, diff


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _ip_str(raw: bytes) -> str:
    return socket.inet_ntoa(raw)


class EndpointsMap:
    """Pod IPv4 -> endpoint id, host veth ifindex, identity, flags, MACs."""

    def __init__(self, raw: RawMap):
        self.raw = raw

    @staticmethod
    def encode(info: EndpointInfo) -> tuple[bytes, bytes]:
        flags = (EP_F_INGRESS_ENFORCED if info.ingress_enforced else 0) | (
            EP_F_EGRESS_ENFORCED if info.egress_enforced else 0
        )
        key = EP_KEY.pack(socket.inet_aton(info.ip))
        value = EP_VAL.pack(
            info.ep_id,
            info.ifindex,
            info.identity,
            flags,
            _mac_bytes(info.pod_mac),
            _mac_bytes(info.host_mac),
        )
        return key, value

    @staticmethod
    def decode(key: bytes, value: bytes) -> EndpointInfo:
        ep_id, ifindex, identity, flags, pod_mac, host_mac = EP_VAL.unpack(value)
        return EndpointInfo(
            ip=_ip_str(key),
            ep_id=ep_id,
            ifindex=ifindex,
            identity=identity,
            ingress_enforced=bool(flags & EP_F_INGRESS_ENFORCED),
            egress_enforced=bool(flags & EP_F_EGRESS_ENFORCED),
            pod_mac=_mac_str(pod_mac),
            host_mac=_mac_str(host_mac),
        )

    def list(self) -> list[EndpointInfo]:
        return sorted(
            (self.decode(k, v) for k, v in self.raw.entries().items()), key=lambda e: e.ep_id
        )

    def get(self, ip: str) -> EndpointInfo | None:
        key = EP_KEY.pack(socket.inet_aton(ip))
        value = self.raw.get(key)
        return None if value is None else self.decode(key, value)

    def by_id(self, ep_id: int) -> EndpointInfo | None:
        """The entry of ``ep_id`` (keyed by IP: a scan, decoding only the match)."""
        for key, value in self.raw.entries().items():
            if int.from_bytes(value[:4], "little") == ep_id:  # ep_info.ep_id comes first
                return self.decode(key, value)
        return None

    def put(self, info: EndpointInfo) -> bool:
        """Write the entry unless it is already exactly this; True if written."""
        key, value = self.encode(info)
        if self.raw.get(key) == value:
            return False
        self.raw.update([(key, value)])
        return True

    def remove(self, ip: str) -> bool:
        key = EP_KEY.pack(socket.inet_aton(ip))
        if self.raw.get(key) is None:
            return False
        self.raw.delete([key])
        return True


class IpcacheMap:
    """IPv4 prefix -> identity and tunnel endpoint (LPM trie)."""

    def __init__(self, raw: RawMap):
        self.raw = raw

    @staticmethod
    def encode_key(prefix: str) -> bytes:
        ip, _, plen = prefix.partition("/")
        prefixlen = int(plen) if plen else 32
        packed = socket.inet_aton(ip)
        if prefixlen < 32:
            mask = (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF
            packed = (int.from_bytes(packed, "big") & mask).to_bytes(4, "big")
        return IPCACHE_KEY.pack(prefixlen, packed)

    def encode_all(self, entries: Iterable[IpcacheEntry]) -> dict[bytes, bytes]:
        tunnels: dict[str | None, int] = {None: 0}
        desired: dict[bytes, bytes] = {}
        pack_val = IPCACHE_VAL.pack
        for e in entries:
            tunnel = tunnels.get(e.tunnel_endpoint)
            if tunnel is None:
                tunnel = int.from_bytes(socket.inet_aton(str(e.tunnel_endpoint)), "big")
                tunnels[e.tunnel_endpoint] = tunnel
            # Bit 24: a node-local identity (an address the DNS proxy learnt, nodeagent.fqdn),
            # never carried in a VNI, so never behind a tunnel.
            if not (0 <= e.identity < 1 << 24
                    or (e.identity < 1 << 25 and e.tunnel_endpoint is None)):
                raise ValueError(f"identity {e.identity} does not fit 24 bits")
            desired[self.encode_key(e.prefix)] = pack_val(e.identity, tunnel)
        return desired

    @staticmethod
    def decode(key: bytes, value: bytes) -> IpcacheEntry:
        prefixlen, ip = IPCACHE_KEY.unpack(key)
        identity, tunnel = IPCACHE_VAL.unpack(value)
        endpoint = socket.inet_ntoa(tunnel.to_bytes(4, "big")) if tunnel else None
        return IpcacheEntry(f"{_ip_str(ip)}/{prefixlen}", identity, endpoint)

    def sync(self, entries: Iterable[IpcacheEntry]) -> int:
        """Make the whole map equal ``entries``; returns the writes it took."""
        return self.raw.sync(self.encode_all(entries))

    def upsert(self, entries: Iterable[IpcacheEntry]) -> int:
        desired = self.encode_all(entries)
        changed = [(k, v) for k, v in desired.items() if self.raw.get(k) != v]
        if changed:
            self.raw.update(changed)
        return len(changed)

    def delete(self, prefixes: Iterable[str]) -> int:
        keys = [k for k in dict.fromkeys(map(self.encode_key, prefixes)) if self.raw.get(k)]
        if keys:
            self.raw.delete(keys)
        return len(keys)

    def list(self) -> list[IpcacheEntry]:
        return [self.decode(k, v) for k, v in sorted(self.raw.entries().items())]


class PolicyMap:
    """Policy keys of every local endpoint in one LPM trie (see policykeys)."""

    def __init__(self, raw: RawMap):
        self.raw = raw

    def current(self, ep_id: int) -> dict[bytes, bytes]:
        """The keys (and values) the map holds for one endpoint."""
        return {k: v for k, v in self.raw.entries().items() if policykeys.key_ep_id(k) == ep_id}

    def by_endpoint(self) -> dict[int, dict[bytes, bytes]]:
        """``current`` of every endpoint that has keys, in one pass over the map."""
        out: dict[int, dict[bytes, bytes]] = {}
        for k, v in self.raw.entries().items():
            out.setdefault(policykeys.key_ep_id(k), {})[k] = v
        return out

    def desired(self, ep_id: int, entries: Iterable[PolicyEntry]) -> dict[bytes, bytes]:
        """One endpoint's complete key set; refuses one that could never fit the map."""
        desired = policykeys.endpoint_keys(ep_id, entries)
        if len(desired) > self.raw.max_entries:
            raise ValueError(f"{len(desired)} policy keys exceed the map size")
        return desired

    def remove_endpoint(self, ep_id: int) -> int:
        return self.raw.sync({}, self.current(ep_id))

    def get(self, ep_id: int) -> list[PolicyKeyInfo]:
        current = self.current(ep_id)
        return [policykeys.decode_key(k, current[k]) for k in sorted(current)]

    def endpoint_ids(self) -> set[int]:
        return {policykeys.key_ep_id(k) for k in self.raw.entries()}


class CtMap:
    """Connection tracking (LRU hash); expiry is checked by the programs on lookup."""

    def __init__(self, raw: RawMap):
        self.raw = raw

    def list(self) -> list[CtEntry]:
        now = time.monotonic_ns()
        out = []
        for k, v in self.raw.dump().items():
            saddr, daddr, sport, dport, proto = CT_KEY.unpack(k)
            expires, created, sid, did, flags, nat, nat_port, nat_ip = CT_VAL.unpack(v)
            where = f"{_ip_str(nat_ip)}:{int.from_bytes(nat_port, 'big')}"
            nat_text = {CT_NAT_SERVICE: where, CT_NAT_REVERSE: f"reply from {where}",
                        CT_NAT_TO_PROXY: f"to proxy :{int.from_bytes(nat_port, 'big')}",
                        CT_NAT_PROXY_UPSTREAM: "proxy upstream",
                        CT_NAT_HAIRPIN: f"reply from {where} (hairpin)"}
            out.append(
                CtEntry(
                    saddr=_ip_str(saddr),
                    daddr=_ip_str(daddr),
                    sport=int.from_bytes(sport, "big"),
                    dport=int.from_bytes(dport, "big"),
                    protocol=proto,
                    src_identity=sid,
                    dst_identity=did,
                    tcp_flags=flags,
                    expires_in_s=(expires - now) / 1e9,
                    age_s=(now - created) / 1e9,
                    nat=nat_text.get(nat, ""),
                )
            )
        return out

    def gc(self) -> int:
        """Delete expired entries (bpf_ktime_get_ns is CLOCK_MONOTONIC)."""
        now = time.monotonic_ns()
        stale = [k for k, v in self.raw.dump().items() if CT_VAL.unpack(v)[0] < now]
        if stale:
            self.raw.delete(stale)
        return len(stale)


    def forget(self, gone: set[tuple[bytes, bytes]]) -> int:
        """Delete the UDP client -> ClusterIP entries that remember a backend the frontend no
        longer has, so the flow's next packet chooses again.  TCP connections keep their
        backend until they end (a backend that is draining finishes them; one that is gone
        stops answering), as kube-proxy does.  ``gone``: (lb_fe_key, lb_be_val) pairs."""
        if not gone:
            return 0
        stale = []
        for k, v in self.raw.dump().items():
            if v[25] != CT_NAT_SERVICE:  # ct_val.nat
                continue
            _s, daddr, _sp, dport, proto = CT_KEY.unpack(k)
            if proto != socket.IPPROTO_UDP:
                continue
            *_, nat_port, nat_ip = CT_VAL.unpack(v)
            if (LB_FE_KEY.pack(daddr, dport, proto), LB_BE_VAL.pack(nat_ip, nat_port)) in gone:
                stale.append(k)
        if stale:
            self.raw.delete(stale)
        return len(stale)


class CountersMap:
    """Per-endpoint packet/byte counters (per-CPU hash, summed here via bcc)."""

    def __init__(self, table: Any):
        self.table = table

    def list(self, ep_id: int | None = None) -> list[CounterEntry]:
        out = []
        for key, values in self.table.items():
            if ep_id is not None and key.ep_id != ep_id:
                continue
            out.append(
                CounterEntry(
                    ep_id=key.ep_id,
                    direction=Direction(key.dir),
                    reason=Reason(key.reason),
                    packets=sum(v.packets for v in values),
                    bytes=sum(v.bytes for v in values),
                )
            )
        return sorted(out, key=lambda c: (c.ep_id, c.direction, c.reason))

    def remove_endpoint(self, ep_id: int) -> None:
        for key in list(self.table.keys()):
            if key.ep_id == ep_id:
                del self.table[key]


class ConfigMap:
    """The node's single configuration entry (VXLAN ifindex, flags)."""

    def __init__(self, raw: RawMap):
        self.raw = raw

    def set(self, vxlan_ifindex: int, flags: int) -> bool:
        key = (0).to_bytes(4, "little")
        value = CONFIG_VAL.pack(vxlan_ifindex, flags)
        if self.raw.get(key) == value:
            return False
        self.raw.update([(key, value)])
        return True



class MeshGraceMap:
    """Cluster id -> monotonic ns until which overlay ingress lets that cluster's identities
    pass where no policy entry matched them (nodeagent/meshgrace.py)."""

    def __init__(self, raw: RawMap):
        self.raw = raw

    def sync(self, until: dict[int, int]) -> int:
        return self.raw.sync({MESH_GRACE_KEY.pack(cluster): MESH_GRACE_VAL.pack(ns)
                              for cluster, ns in until.items()})

    def list(self) -> dict[int, int]:
        return {MESH_GRACE_KEY.unpack(k)[0]: MESH_GRACE_VAL.unpack(v)[0]
                for k, v in self.raw.entries().items()}


LB_PROTOCOLS = (6, 17)
"""Protocols the datapath translates (TCP, UDP)."""


class LbMaps:
    """Service frontends and their backend slots (lb_frontends + lb_backends).

    Writes keep every packet's view whole: new backend slots go in before the frontend's
    count grows, and stale slots go out after it shrank, so a lookup never finds a count
    that points past the slots.
    """

    def __init__(self, frontends: RawMap, backends: RawMap):
        self.frontends = frontends
        self.backends = backends
        self.gone: set[tuple[bytes, bytes]] = set()
        """(frontend key, backend value) pairs writes took out of a frontend since the caller
        last cleared it: connections remembered on them are to be forgotten (CtMap.forget)."""

    @staticmethod
    def frontend_key(ip: str, port: int, protocol: int) -> bytes:
        return LB_FE_KEY.pack(socket.inet_aton(ip), port.to_bytes(2, "big"), protocol)

    @staticmethod
    def _backend_key(fe_key: bytes, slot: int) -> bytes:
        ip, port, proto = LB_FE_KEY.unpack(fe_key)
        return LB_BE_KEY.pack(ip, port, proto, slot)

    def encode(self, frontends: Iterable[ServiceFrontend]) -> tuple[dict[bytes, bytes],
                                                                   dict[bytes, bytes]]:
        """(frontend entries, backend entries); refuses what the maps cannot express."""
        fes: dict[bytes, bytes] = {}
        bes: dict[bytes, bytes] = {}
        for fe in frontends:
            where = f"frontend {fe.ip}:{fe.port}/{fe.protocol}"
            if fe.protocol not in LB_PROTOCOLS:
                raise ValueError(f"{where}: protocol must be TCP (6) or UDP (17)")
            if not 0 < fe.port < 1 << 16:
                raise ValueError(f"{where}: port out of range")
            if not 0 < fe.service_id < 1 << 32:
                raise ValueError(f"{where}: service id {fe.service_id} must be 1..2^32-1")
            if len(fe.backends) >= 1 << 16:
                raise ValueError(f"{where}: {len(fe.backends)} backends exceed 65535")
            key = self.frontend_key(fe.ip, fe.port, fe.protocol)
            if key in fes:
                raise ValueError(f"{where}: given twice")
            fes[key] = LB_FE_VAL.pack(fe.service_id, len(fe.backends),
                                      LB_F_AFFINITY if fe.affinity else 0)
            for slot, be in enumerate(fe.backends):
                if not 0 < be.port < 1 << 16:
                    raise ValueError(f"{where}: backend {be.ip} port {be.port} out of range")
                bes[self._backend_key(key, slot)] = LB_BE_VAL.pack(
                    socket.inet_aton(be.ip), be.port.to_bytes(2, "big"))
        if len(fes) > self.frontends.max_entries:
            raise ValueError(f"{len(fes)} frontends exceed the map size")
        if len(bes) > self.backends.max_entries:
            raise ValueError(f"{len(bes)} backends exceed the map size")
        return fes, bes

    def _write(self, fes: dict[bytes, bytes], bes: dict[bytes, bytes],
               fe_current: dict[bytes, bytes], be_current: dict[bytes, bytes]) -> int:
        be_changed, be_stale = diff(bes, be_current)
        fe_changed, fe_stale = diff(fes, fe_current)
        replaced = [k for k, _ in be_changed if k in be_current]
        if be_stale or replaced:  # a backend key starts with its frontend's key
            old = {(k[:LB_FE_KEY.size], be_current[k]) for k in (*be_stale, *replaced)}
            fronts = {fe for fe, _ in old}
            new = {(k[:LB_FE_KEY.size], v) for k, v in bes.items()
                   if k[:LB_FE_KEY.size] in fronts}
            self.gone |= old - new
        if be_changed:
            self.backends.update(be_changed)
        if fe_changed:
            self.frontends.update(fe_changed)
        if fe_stale:
            self.frontends.delete(fe_stale)
        if be_stale:
            self.backends.delete(be_stale)
        return len(be_changed) + len(be_stale) + len(fe_changed) + len(fe_stale)

    def sync(self, frontends: Iterable[ServiceFrontend]) -> int:
        """Make both maps hold exactly ``frontends``; returns the writes it took."""
        fes, bes = self.encode(frontends)
        return self._write(fes, bes, self.frontends.entries(), self.backends.entries())

    def _slots(self, fe_keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """The backend entries the maps hold now for these frontends."""
        out: dict[bytes, bytes] = {}
        for key in fe_keys:
            value = self.frontends.get(key)
            count = LB_FE_VAL.unpack(value)[1] if value is not None else 0
            for slot in range(count):
                bkey = self._backend_key(key, slot)
                got = self.backends.get(bkey)
                if got is not None:
                    out[bkey] = got
        return out

    def _of_service(self, service_id: int) -> dict[bytes, bytes]:
        return {k: v for k, v in self.frontends.entries().items()
                if LB_FE_VAL.unpack(v)[0] == service_id}

    def update_service(self, service_id: int, frontends: Iterable[ServiceFrontend]) -> int:
        """Make one service's frontends exactly ``frontends`` (all of ``service_id``);
        other services are not read beyond the frontends map."""
        fes, bes = self.encode(frontends)
        if any(LB_FE_VAL.unpack(v)[0] != service_id for v in fes.values()):
            raise ValueError(f"every frontend must carry service id {service_id}")
        fe_current = self._of_service(service_id)
        for key in fes:  # a frontend another service held before is taken over
            value = self.frontends.get(key)
            if value is not None:
                fe_current[key] = value
        return self._write(fes, bes, fe_current, self._slots(fe_current))

    def remove_service(self, service_id: int) -> int:
        fe_current = self._of_service(service_id)
        return self._write({}, {}, fe_current, self._slots(fe_current))

    def list(self) -> list[ServiceFrontend]:
        bes = self.backends.entries()
        out = []
        for key, value in self.frontends.entries().items():
            ip, port, proto = LB_FE_KEY.unpack(key)
            svc_id, count, flags = LB_FE_VAL.unpack(value)
            backends = []
            for slot in range(count):
                raw = bes.get(self._backend_key(key, slot))
                if raw is not None:
                    bip, bport = LB_BE_VAL.unpack(raw)
                    backends.append(Backend(_ip_str(bip), int.from_bytes(bport, "big")))
            out.append(ServiceFrontend(_ip_str(ip), int.from_bytes(port, "big"), proto,
                                       svc_id, tuple(backends), bool(flags & LB_F_AFFINITY)))
        return sorted(out, key=lambda f: (f.service_id, socket.inet_aton(f.ip), f.port,
                                          f.protocol))
