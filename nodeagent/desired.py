"""What this node's BPF maps should hold, computed from what the agent received.

Pure functions (no kernel, no I/O) so the translation rules live in one place:
- an ipcache entry of one of this node's pods has no tunnel (local delivery);
- a pod of another node is behind that node's tunnel endpoint (its underlay IP);
- another node's underlay IP is the remote-node identity (6); this node's own underlay IP is
  the host identity, which the datapath adds itself;
- a CIDR identity (label `cidr:<prefix>`, allocated for a policy's toCIDR/fromCIDR peer) is
  an ipcache entry of its prefix without a tunnel, as Cilium's agent upserts policy CIDRs:
  the longest prefix wins, so a pod or node address inside it keeps its own identity, and an
  address no entry covers is `world` in the datapath;
- a policy entry becomes the datapath's PolicyEntry (peer 0 = any, protocol 0 = any); an
  allow entry with HTTP rules carries the node proxy's port (without a proxy it allows
  nothing: L7 rules are never skipped), and the proxy gets, per endpoint and direction that
  has such an entry, every allow entry with its rules (an entry without rules lets every
  request through, as in Cilium);
- a service with a ClusterIP becomes one frontend per port (TCP/UDP) with the backends that
  serve that port, sorted so every node (and a restarted agent) puts them in the same slots;
  a headless service has no frontend (DNS answers its backends).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from bulkhead import httprules
from bulkhead.reserved import ID_REMOTE_NODE
from bulkhead.v1 import subscription_pb2 as pb
from bulkhead.v1 import types_pb2
from nodeagent.datapath import Backend, Direction, IpcacheEntry, PolicyEntry, ServiceFrontend
from nodeagent.proxy.rules import EGRESS, INGRESS, L7Entry

CIDR_LABEL = "cidr:"


def tunnel_of(entry: types_pb2.IPCacheEntry, node: str,
              nodes: Mapping[str, types_pb2.Node]) -> str | None:
    """The underlay IP that traffic to ``entry`` is encapsulated to (None: this node)."""
    if entry.node == node and (not entry.cluster or _same_cluster(entry, nodes.get(node))):
        return None
    if entry.tunnel.ip:
        return entry.tunnel.ip
    owner = nodes.get(entry.node)
    return owner.underlay_ip if owner is not None and owner.underlay_ip else None


def _same_cluster(entry: types_pb2.IPCacheEntry, me: types_pb2.Node | None) -> bool:
    return me is None or not me.cluster or me.cluster == entry.cluster


def ipcache_entry(entry: types_pb2.IPCacheEntry, node: str,
                  nodes: Mapping[str, types_pb2.Node]) -> IpcacheEntry:
    return IpcacheEntry(entry.prefix, entry.identity, tunnel_of(entry, node, nodes))


def node_entries(node: str, nodes: Iterable[types_pb2.Node]) -> list[IpcacheEntry]:
    """Other nodes' underlay IPs as remote-node."""
    return [IpcacheEntry(f"{n.underlay_ip}/32", ID_REMOTE_NODE)
            for n in nodes if n.name != node and n.underlay_ip]


def cidr_entries(identities: Iterable[types_pb2.Identity]) -> list[IpcacheEntry]:
    """The ipcache entries of CIDR identities (IPv4 prefixes: the datapath's ipcache)."""
    out: dict[str, IpcacheEntry] = {}
    for identity in sorted(identities, key=lambda i: i.id):
        for label in identity.labels:
            if not label.startswith(CIDR_LABEL):
                continue
            try:
                net = ipaddress.ip_network(label[len(CIDR_LABEL):], strict=False)
            except ValueError:
                continue
            if net.version == 4:
                out.setdefault(str(net), IpcacheEntry(str(net), identity.id))
    return list(out.values())


def ipcache(node: str, nodes: Mapping[str, types_pb2.Node],
            entries: Iterable[types_pb2.IPCacheEntry]) -> list[IpcacheEntry]:
    """The whole ipcache of ``node`` (without its own host entry)."""
    out = {e.prefix: e for e in node_entries(node, nodes.values())}
    for entry in entries:  # a pod prefix wins over a node address that collides with it
        out[entry.prefix] = ipcache_entry(entry, node, nodes)
    return list(out.values())


def _is_l7(e: pb.PolicyEntry) -> bool:
    return e.l7 == pb.PolicyEntry.HTTP and e.verdict == pb.PolicyEntry.ALLOW


DNS_PORT = 53
TCP, UDP = 6, 17


def _covers(e: pb.PolicyEntry, port: int) -> bool:
    """Whether an entry's port range (0-0: every port; hi 0: lo alone) holds ``port``."""
    if (e.port_lo, e.port_hi) == (0, 0):
        return True
    return e.port_lo <= port <= (e.port_hi or e.port_lo)


def _dns_redirects(policy: pb.IdentityPolicy, dns_port: int) -> list[PolicyEntry]:
    """Port 53 (UDP and TCP) of every egress allow entry that reaches it, to the agent's DNS
    proxy, for an identity with `rules.dns` (Cilium redirects the DNS of endpoints a DNS rule
    selects): the proxy then sees every query, whatever server the pod asks.  These keys are
    more specific than the entry's own (a wider port range stays a plain allow), and where
    they coincide the redirect wins (policykeys.endpoint_keys)."""
    if not dns_port or not policy.dns_patterns:
        return []
    out: list[PolicyEntry] = []
    for e in policy.entries:
        if (e.direction != pb.PolicyEntry.EGRESS or e.verdict != pb.PolicyEntry.ALLOW
                or _is_l7(e) or not _covers(e, DNS_PORT)):
            continue
        out.extend(PolicyEntry(Direction.EGRESS, e.peer, proto, DNS_PORT, DNS_PORT,
                               proxy_port=dns_port)
                   for proto in (TCP, UDP) if e.protocol in (0, proto))
    return out


def policy_entries(policy: pb.IdentityPolicy, proxy_port: int = 0,
                   dns_port: int = 0) -> list[PolicyEntry]:
    """The datapath's entries of one identity's policy; ``proxy_port`` the HTTP proxy's
    (0: none, HTTP entries then allow nothing), ``dns_port`` the DNS proxy's transparent
    sockets (0: DNS is not redirected)."""
    out: list[PolicyEntry] = []
    for e in policy.entries:
        if _is_l7(e) and not proxy_port:
            continue
        entry = PolicyEntry(
            direction=Direction.EGRESS if e.direction == pb.PolicyEntry.EGRESS
            else Direction.INGRESS,
            peer=e.peer,
            protocol=e.protocol,
            port_lo=e.port_lo,
            port_hi=e.port_hi,
            deny=e.verdict == pb.PolicyEntry.DENY,
            proxy_port=proxy_port if _is_l7(e) else 0,
        )
        if _is_l7(e) and e.protocol == 0:
            # HTTP is TCP: the datapath redirects UDP too (to the DNS proxy), so an HTTP
            # entry of any protocol redirects its TCP keys and allows the others plainly.
            out.append(PolicyEntry(entry.direction, e.peer, TCP, e.port_lo, e.port_hi,
                                   proxy_port=proxy_port))
            entry = PolicyEntry(entry.direction, e.peer, 0, e.port_lo, e.port_hi)
        out.append(entry)
    return out + _dns_redirects(policy, dns_port)


def l7_entries(endpoints: Iterable[tuple[str, pb.IdentityPolicy]]) -> list[L7Entry]:
    """What the node's proxy checks requests against, for (endpoint IP, its policy) pairs."""
    out: list[L7Entry] = []
    for ip, policy in endpoints:
        for direction, name in ((pb.PolicyEntry.INGRESS, INGRESS),
                                (pb.PolicyEntry.EGRESS, EGRESS)):
            allows = [e for e in policy.entries if e.direction == direction
                      and e.verdict == pb.PolicyEntry.ALLOW and e.protocol in (0, 6)]
            if not any(_is_l7(e) for e in allows):
                continue
            out.extend(
                L7Entry(ip, name, e.peer, e.port_lo, e.port_hi,
                        tuple(httprules.from_proto(r) for r in e.http) if _is_l7(e) else None,
                        policy.identity)
                for e in allows)
    return out


SERVICE_PROTOCOLS = {"TCP": 6, "UDP": 17}


def service_frontends(service: types_pb2.Service) -> list[ServiceFrontend]:
    """The frontends of one service as the datapath takes them ([] when it has none).

    A backend serves a port when it names that port (``port_name``, "" for a single unnamed
    port) and carries its protocol (or none).  Ports of other protocols are not translated.
    Raises ValueError naming the service when it cannot be expressed (IPv4 only, ports
    1..65535, a non-zero id).
    """
    if service.headless or not service.cluster_ip:
        return []
    ref = f"service {service.namespace}/{service.name}"
    if not 0 < service.id < 1 << 32:
        raise ValueError(f"{ref}: no frontend id")
    vip = _ipv4(service.cluster_ip, f"{ref}: cluster_ip")
    out = []
    for port in service.ports:
        protocol = port.protocol or "TCP"
        number = SERVICE_PROTOCOLS.get(protocol)
        if number is None:
            continue
        if not 0 < port.port < 1 << 16:
            raise ValueError(f"{ref}: port {port.port} out of range")
        backends = {
            (_ipv4(b.ip, f"{ref}: backend {b.endpoint or b.ip}"), b.port)
            for b in service.backends
            if b.port_name == port.name and (b.protocol or "TCP") == protocol
            and 0 < b.port < 1 << 16
        }
        out.append(ServiceFrontend(
            str(vip), port.port, number, service.id,
            tuple(Backend(str(ip), p) for ip, p in sorted(backends)),
            affinity=service.client_ip_affinity))
    return out


def _ipv4(text: str, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not an IPv4 address") from None
