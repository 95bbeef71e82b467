"""Flow events as the local API serves them: enriched, numbered, held, followed, filtered.

The datapath reports raw verdicts (addresses, identities, a monotonic timestamp).  Here each
becomes a `bulkhead.v1.Flow` at the moment it is read, while the identities and endpoints it
names are still known: wall-clock time, node, labels of both identities, namespace/pod of local
endpoints, a hubble-like drop reason, TCP flag names, the service a translated connection (or a
no-backend drop) was sent to, and a per-agent sequence number with the agent's boot id so a
relay can de-duplicate across reconnects and restarts.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bulkhead import flowfilter
from bulkhead.v1 import flow_pb2, fqdn_pb2, types_pb2
from nodeagent.datapath import Flow, Reason, Verdict
from nodeagent.datapath.models import PROTOCOLS

DROP_REASONS = {
    Reason.NONE: "",
    Reason.POLICY_DENIED: "Policy denied by denylist",
    Reason.POLICY_DEFAULT_DENY: "Policy denied",
    Reason.UNKNOWN_DESTINATION: "Unknown destination",
    Reason.UNKNOWN_SOURCE: "Invalid source ip",
    Reason.TUNNEL_ERROR: "Encapsulation failed",
    Reason.CT_FULL: "CT: Map insertion failed",
    Reason.NO_SERVICE_BACKEND: "No service backend",
    Reason.PROXY_UNAVAILABLE: "Proxy redirection failed",
}
TCP_FLAGS = ((0x02, "SYN"), (0x10, "ACK"), (0x01, "FIN"), (0x04, "RST"), (0x08, "PSH"),
             (0x20, "URG"), (0x40, "ECE"), (0x80, "CWR"))
FOLLOW_QUEUE = 4096

Labels = Callable[[int], list[str]]
"""identity -> its labels (empty when unknown)."""
Pod = Callable[[str], tuple[str, str] | None]
"""ip -> (namespace, name) of a local endpoint."""
ServiceName = Callable[[int], tuple[str, str] | None]
"""service frontend id -> (namespace, name) of the service."""


def no_service(_service_id: int) -> None:
    return None


class ServiceNames:
    """Service frontend id -> (namespace, name), over the received services ("ns/name" ->
    Service). The id index is rebuilt only when an id is not found or now names another
    service, so a flow costs a dict look-up, not a scan of every service."""

    def __init__(self, services: Mapping[str, types_pb2.Service]) -> None:
        self.services = services
        self._by_id: dict[int, str] = {}

    def _current(self, service_id: int) -> types_pb2.Service | None:
        ref = self._by_id.get(service_id)
        found = self.services.get(ref) if ref is not None else None
        return found if found is not None and found.id == service_id else None

    def __call__(self, service_id: int) -> tuple[str, str] | None:
        if not service_id:
            return None
        found = self._current(service_id)
        if found is None:
            self._by_id = {s.id: ref for ref, s in self.services.items() if s.id}
            found = self._current(service_id)
        return (found.namespace, found.name) if found is not None else None


class _Held:
    """A flow in the window: the raw event with what it named when it was read, and its API
    message once built."""

    __slots__ = ("dst_labels", "dst_pod", "flow", "raw", "sequence", "service", "src_labels",
                 "src_pod", "wall_ns")

    @classmethod
    def ready(cls, flow: flow_pb2.Flow) -> _Held:
        """A flow whose message is built already (the proxy's L7 flows)."""
        held = cls(None, flow.time_ns, flow.sequence, [], [], None, None, None)
        held.flow = flow
        return held

    def __init__(self, raw: Flow | None, wall_ns: int, sequence: int, src_labels: list[str],
                 dst_labels: list[str], src_pod: tuple[str, str] | None,
                 dst_pod: tuple[str, str] | None, service: tuple[str, str] | None) -> None:
        self.raw = raw
        self.wall_ns = wall_ns
        self.sequence = sequence
        self.src_labels = src_labels
        self.dst_labels = dst_labels
        self.src_pod = src_pod
        self.dst_pod = dst_pod
        self.service = service
        self.flow: flow_pb2.Flow | None = None


def _peer(ip: str, port: int, identity: int, labels: list[str],
          owner: tuple[str, str] | None, node_name: str = "") -> flow_pb2.FlowPeer:
    peer = flow_pb2.FlowPeer(ip=ip, port=port, identity=identity, labels=labels,
                             node_name=node_name)
    if owner is not None:
        peer.namespace, peer.pod = owner
    return peer


NODE_IDENTITIES = (1, 6)
"""reserved:host, reserved:remote-node: a peer with one of these is a node's own address."""


def no_node(ip: str, identity: int) -> str:
    return ""


def tcp_flag_names(bits: int) -> list[str]:
    return [name for bit, name in TCP_FLAGS if bits & bit]


class FlowStore:
    def __init__(self, node: str, capacity: int, labels: Labels, pod: Pod,
                 service: ServiceName = no_service,
                 endpoint: Callable[[str], tuple[int, int] | None] = lambda ip: None,
                 node_of: Callable[[str, int], str] = no_node) -> None:
        self.node = node
        self.node_of = node_of
        """(ip, identity) -> the name of the node that address is ("" unknown): names the
        node side of host-firewall flows."""
        self.endpoint = endpoint
        """ip -> (endpoint id, identity) of a local endpoint (names the proxy's side)."""
        self.capacity = capacity
        self.labels = labels
        self.pod = pod
        self.service = service
        self.boot_id = str(uuid.uuid4())
        self.sequence = 0
        self.forwarded = 0
        """Allowed new connections seen since start (for metrics; never reset)."""
        self.dropped: collections.Counter[str] = collections.Counter()
        """Drops seen since start, by drop reason (for metrics; never reset)."""
        self.flows: collections.deque[_Held] = collections.deque(maxlen=capacity)
        self._followers: set[asyncio.Queue[flow_pb2.Flow | None]] = set()

    def _capture(self, raw: Flow, wall_ns: int) -> _Held:
        """What the flow names, looked up now (identities and pods may be gone later)."""
        self.sequence += 1
        return _Held(raw, wall_ns, self.sequence, self.labels(raw.src_identity),
                     self.labels(raw.dst_identity), self.pod(raw.saddr), self.pod(raw.daddr),
                     self.service(raw.service_id) if raw.service_id else None)

    def _message(self, held: _Held) -> flow_pb2.Flow:
        """The API flow of a held one, built once (on first read) and kept."""
        if held.flow is not None:
            return held.flow
        raw = held.raw
        assert raw is not None   # only L7 flows are held without a raw event, built already
        ports = raw.protocol in (6, 17, 132)
        flow = flow_pb2.Flow(
            time_ns=held.wall_ns,
            node=self.node,
            verdict=Verdict(raw.verdict).name,
            drop_reason=DROP_REASONS.get(raw.reason, str(raw.reason)),
            source=_peer(raw.saddr, raw.sport if ports else 0, raw.src_identity,
                         held.src_labels, held.src_pod, self._node_name(raw.saddr,
                                                                         raw.src_identity)),
            destination=_peer(raw.daddr, raw.dport if ports else 0, raw.dst_identity,
                              held.dst_labels, held.dst_pod,
                              self._node_name(raw.daddr, raw.dst_identity)),
            protocol=PROTOCOLS.get(raw.protocol, str(raw.protocol)),
            tcp_flags=tcp_flag_names(raw.tcp_flags) if raw.protocol == 6 else [],
            direction=raw.direction.name.lower(),
            endpoint_id=raw.ep_id,
            sequence=held.sequence,
            boot_id=self.boot_id,
            policy_match=raw.policy_match,
            mesh_sync_grace=raw.mesh_sync_grace,
            type="L3_L4",
        )
        if held.service is not None:
            flow.destination_service.namespace, flow.destination_service.name = held.service
        held.flow = flow
        return flow

    def _node_name(self, ip: str, identity: int) -> str:
        return self.node_of(ip, identity) if identity in NODE_IDENTITIES else ""

    def add(self, raws: Iterable[Flow]) -> int:
        """Holds and fans out a batch read from the ring buffer. Enrichment is looked up now;
        the API message is built only when a flow is read (most never are: the window keeps
        the newest few thousand), so a new connection costs the agent little."""
        offset = time.time_ns() - time.monotonic_ns()  # bpf_ktime_get_ns is CLOCK_MONOTONIC
        n = 0
        for raw in raws:
            held = self._capture(raw, raw.time_ns + offset)
            if raw.verdict == Verdict.FORWARDED:
                self.forwarded += 1
            else:
                self.dropped[DROP_REASONS.get(raw.reason, str(raw.reason))] += 1
            self._hold(held)
            n += 1
        return n

    def convert_l7(self, raw: dict[str, Any]) -> flow_pb2.Flow:
        """One flow the proxy recorded (nodeagent.proxy.http1) as a Hubble-like L7 flow.  The
        proxy knows the peer's identity (from the redirect's mark); the local endpoint's comes
        from the endpoint table.  A response goes from the server to the client."""
        self.sequence += 1
        local = self.endpoint(raw["endpoint"])
        ep_id, local_id = local if local is not None else (0, 0)
        ingress = raw["direction"] == "ingress"
        src_id, dst_id = (raw["peer"], local_id) if ingress else (local_id, raw["peer"])
        src = _peer(raw["src"][0], raw["src"][1], src_id, self.labels(src_id),
                    self.pod(raw["src"][0]))
        dst = _peer(raw["dst"][0], raw["dst"][1], dst_id, self.labels(dst_id),
                    self.pod(raw["dst"][0]))
        response = raw["type"] == "response"
        dropped = raw["verdict"] == "DROPPED"
        flow = flow_pb2.Flow(
            time_ns=raw["time_ns"], node=self.node, verdict=raw["verdict"],
            drop_reason=(raw.get("summary") or "Policy denied (L7)") if dropped else "",
            source=dst if response else src, destination=src if response else dst,
            protocol="TCP", direction=raw["direction"], endpoint_id=ep_id,
            sequence=self.sequence, boot_id=self.boot_id, type="L7")
        flow.l7.type = "RESPONSE" if response else "REQUEST"
        http = raw.get("http")
        if http:
            flow.l7.latency_ns = raw.get("latency_ns", 0)
            flow.l7.http.CopyFrom(flow_pb2.HttpFlow(
                code=http["code"] or (403 if dropped else 0), method=http["method"],
                url=http["url"], protocol=http["protocol"],
                headers=[flow_pb2.HttpHeader(key=h["key"], value=h["value"])
                         for h in http["headers"]]))
        return flow

    def add_dns(self, raw: dict[str, Any]) -> None:
        """One query or answer of the DNS proxy (nodeagent.dns.proxy) as a Hubble-like L7 DNS
        flow: the pod to the node's DNS address (the host identity), the answer back."""
        self.sequence += 1
        client_ip, client_port = raw["client"]
        local = self.endpoint(client_ip)
        ep_id, local_id = local if local is not None else (0, 0)
        client = _peer(client_ip, client_port, local_id, self.labels(local_id),
                       self.pod(client_ip))
        server = _peer(raw["server"][0], raw["server"][1], 1, self.labels(1), None)
        response = raw["type"] == "response"
        dropped = raw["verdict"] == "DROPPED"
        flow = flow_pb2.Flow(
            time_ns=raw["time_ns"], node=self.node, verdict=raw["verdict"],
            drop_reason="Policy denied (DNS)" if dropped else "",
            source=server if response else client, destination=client if response else server,
            protocol="UDP", direction="egress", endpoint_id=ep_id,
            sequence=self.sequence, boot_id=self.boot_id, type="L7")
        flow.l7.type = "RESPONSE" if response else "REQUEST"
        flow.l7.latency_ns = raw.get("latency_ns", 0)
        flow.l7.dns.CopyFrom(fqdn_pb2.DnsFlow(
            query=raw["query"], qtypes=raw["qtypes"], ips=raw["ips"], ttl=raw["ttl"],
            rcode=raw["rcode"], cnames=raw["cnames"], observation_source="proxy"))
        self._hold(_Held.ready(flow))

    def add_l7(self, raws: Iterable[dict[str, Any]]) -> int:
        """Holds and fans out flows the proxy recorded."""
        n = 0
        for raw in raws:
            self._hold(_Held.ready(self.convert_l7(raw)))
            n += 1
        return n

    def _hold(self, held: _Held) -> None:
        self.flows.append(held)
        if self._followers:
            flow = self._message(held)
            for queue in list(self._followers):
                try:
                    queue.put_nowait(flow)
                except asyncio.QueueFull:  # a follower that cannot keep up is cut off
                    self._followers.discard(queue)
                    queue.get_nowait()
                    queue.put_nowait(None)

    def last(self, n: int, match: Callable[[flow_pb2.Flow], bool]) -> list[flow_pb2.Flow]:
        if n <= 0:
            return []
        out: list[flow_pb2.Flow] = []
        for held in reversed(self.flows):
            flow = self._message(held)
            if match(flow):
                out.append(flow)
                if len(out) >= n:
                    break
        out.reverse()
        return out

    def follow(self) -> asyncio.Queue[flow_pb2.Flow | None]:
        queue: asyncio.Queue[flow_pb2.Flow | None] = asyncio.Queue(FOLLOW_QUEUE)
        self._followers.add(queue)
        return queue

    def unfollow(self, queue: asyncio.Queue[flow_pb2.Flow | None]) -> None:
        self._followers.discard(queue)


def matcher(f: flow_pb2.FlowFilter, after_sequence: int = 0
            ) -> Callable[[flow_pb2.Flow], bool]:
    """The FlowFilter (shared with the relay) plus the resume point, as a predicate."""
    return lambda flow: flow.sequence > after_sequence and flowfilter.matches(flow, f)
