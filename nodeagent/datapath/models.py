"""Plain value types the datapath library takes and returns (no bcc, no ctypes)."""

from __future__ import annotations

from dataclasses import dataclass

from nodeagent.datapath.layout import Direction, ObsPoint, Reason, Verdict

PROTOCOLS = {0: "any", 1: "ICMP", 6: "TCP", 17: "UDP", 132: "SCTP"}


@dataclass(frozen=True)
class EndpointSpec:
    """What the agent wants for one local endpoint (pod).

    ``netns`` is a network namespace name (under /var/run/netns) or a path
    such as /proc/<pid>/ns/net.  ``host_ifname`` is the host-side veth name in
    the node namespace (at most 15 characters).  ``None`` enforcement flags
    keep what the pinned map already says (a restarted agent must not open a
    window), and mean "not enforced" for a new endpoint.
    """

    ep_id: int
    ip: str
    identity: int
    netns: str
    host_ifname: str
    pod_ifname: str = "eth0"
    mtu: int = 1450
    ingress_enforced: bool | None = None
    egress_enforced: bool | None = None


@dataclass(frozen=True)
class EndpointInfo:
    """One entry of the endpoints map."""

    ip: str
    ep_id: int
    ifindex: int
    identity: int
    ingress_enforced: bool
    egress_enforced: bool
    pod_mac: str
    host_mac: str


@dataclass(frozen=True)
class IpcacheEntry:
    """IP prefix -> identity and tunnel endpoint (None: not behind a tunnel)."""

    prefix: str
    identity: int
    tunnel_endpoint: str | None = None


@dataclass(frozen=True)
class PolicyEntry:
    """One resolved policy entry as the control plane delivers it.

    ``peer`` 0 means any peer, ``protocol`` 0 any protocol, ports (0, 0) all
    ports; a single port may be given as (p, 0) or (p, p).
    """

    direction: Direction
    peer: int
    protocol: int = 0
    port_lo: int = 0
    port_hi: int = 0
    deny: bool = False
    proxy_port: int = 0
    """An allow entry whose TCP connections go to the node's L7 proxy on this port (0: none)."""


@dataclass(frozen=True)
class PolicyKeyInfo:
    """One key of the policy trie, decoded (a port block, not the original range)."""

    ep_id: int
    direction: Direction
    peer: int
    deny: bool
    protocol: int | None  # None: any protocol
    port_lo: int
    port_hi: int
    proxy_port: int = 0


@dataclass(frozen=True)
class CtEntry:
    saddr: str
    daddr: str
    sport: int
    dport: int
    protocol: int
    src_identity: int
    dst_identity: int
    tcp_flags: int
    expires_in_s: float
    age_s: float
    nat: str = ""
    """"backend IP:port" (a client -> ClusterIP entry), "reply from IP:port" (the translated
    client -> backend entry), "to proxy :PORT" (a connection redirected to the L7 proxy),
    "proxy upstream" (the proxy's own connection to the original destination) or ""."""


@dataclass(frozen=True)
class Backend:
    """One backend of a service frontend: where the connection is translated to."""

    ip: str
    port: int


@dataclass(frozen=True)
class ServiceFrontend:
    """One (ClusterIP, port, protocol) of a service with its backends, in slot order.

    ``service_id`` is the service's frontend id (every port of one service shares it);
    ``affinity`` keeps a client IP on one backend (sessionAffinity: ClientIP).
    """

    ip: str
    port: int
    protocol: int  # 6 TCP / 17 UDP
    service_id: int
    backends: tuple[Backend, ...] = ()
    affinity: bool = False


@dataclass(frozen=True)
class TunnelEntry:
    prefix: str
    tunnel_endpoint: str
    identity: int


@dataclass(frozen=True)
class CounterEntry:
    ep_id: int
    direction: Direction
    reason: Reason
    packets: int
    bytes: int


@dataclass(frozen=True)
class Flow:
    """One flow event from the ring buffer."""

    time_ns: int
    saddr: str
    daddr: str
    sport: int
    dport: int
    protocol: int
    tcp_flags: int
    src_identity: int
    dst_identity: int
    ep_id: int
    direction: Direction
    verdict: Verdict
    reason: Reason
    obs_point: ObsPoint
    service_id: int = 0
    """The service frontend id when the connection was sent to a ClusterIP (0: none)."""
    policy_match: bool = False
    """A rule decided: an allow entry of an enforced direction (FORWARDED) or a deny entry
    (DROPPED, "Policy denied by denylist"); False when no policy applied (default allow) or
    the drop was a default deny."""
    mesh_sync_grace: bool = False
    """Forwarded only under a clustermesh sync grace (nodeagent/meshgrace.py)."""
