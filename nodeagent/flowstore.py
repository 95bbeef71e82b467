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
from bulkhead.v1 import flow_pb2, types_pb2
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


def tcp_flag_names(bits: int) -> list[str]:
    return [name for bit, name in TCP_FLAGS if bits & bit]


class FlowStore:
    def __init__(self, node: str, capacity: int, labels: Labels, pod: Pod,
                 service: ServiceName = no_service,
                 endpoint: Callable[[str], tuple[int, int] | None] = lambda ip: None) -> None:
        self.node = node
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
        self.flows: collections.deque[flow_pb2.Flow] = collections.deque(maxlen=capacity)
        self._followers: set[asyncio.Queue[flow_pb2.Flow | None]] = set()

    def _peer(self, ip: str, port: int, identity: int) -> flow_pb2.FlowPeer:
        peer = flow_pb2.FlowPeer(ip=ip, port=port, identity=identity,
                                 labels=self.labels(identity))
        owner = self.pod(ip)
        if owner is not None:
            peer.namespace, peer.pod = owner
        return peer

    def convert(self, raw: Flow, mono_to_wall: int) -> flow_pb2.Flow:
        self.sequence += 1
        ports = raw.protocol in (6, 17, 132)
        flow = flow_pb2.Flow(
            time_ns=raw.time_ns + mono_to_wall,
            node=self.node,
            verdict=Verdict(raw.verdict).name,
            drop_reason=DROP_REASONS.get(raw.reason, str(raw.reason)),
            source=self._peer(raw.saddr, raw.sport if ports else 0, raw.src_identity),
            destination=self._peer(raw.daddr, raw.dport if ports else 0, raw.dst_identity),
            protocol=PROTOCOLS.get(raw.protocol, str(raw.protocol)),
            tcp_flags=tcp_flag_names(raw.tcp_flags) if raw.protocol == 6 else [],
            direction=raw.direction.name.lower(),
            endpoint_id=raw.ep_id,
            sequence=self.sequence,
            boot_id=self.boot_id,
            policy_match=raw.policy_match,
            type="L3_L4",
        )
        service = self.service(raw.service_id) if raw.service_id else None
        if service is not None:
            flow.destination_service.namespace, flow.destination_service.name = service
        return flow

    def convert_l7(self, raw: dict[str, Any]) -> flow_pb2.Flow:
        """One flow the proxy recorded (nodeagent.proxy.http1) as a Hubble-like L7 flow.  The
        proxy knows the peer's identity (from the redirect's mark); the local endpoint's comes
        from the endpoint table.  A response goes from the server to the client."""
        self.sequence += 1
        local = self.endpoint(raw["endpoint"])
        ep_id, local_id = local if local is not None else (0, 0)
        ingress = raw["direction"] == "ingress"
        src_id, dst_id = (raw["peer"], local_id) if ingress else (local_id, raw["peer"])
        src = self._peer(raw["src"][0], raw["src"][1], src_id)
        dst = self._peer(raw["dst"][0], raw["dst"][1], dst_id)
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

    def add_l7(self, raws: Iterable[dict[str, Any]]) -> int:
        """Holds and fans out flows the proxy recorded."""
        n = 0
        for raw in raws:
            self._hold(self.convert_l7(raw))
            n += 1
        return n

    def add(self, raws: Iterable[Flow]) -> int:
        """Converts, holds and fans out a batch read from the ring buffer."""
        offset = time.time_ns() - time.monotonic_ns()  # bpf_ktime_get_ns is CLOCK_MONOTONIC
        n = 0
        for raw in raws:
            flow = self.convert(raw, offset)
            if raw.verdict == Verdict.FORWARDED:
                self.forwarded += 1
            else:
                self.dropped[flow.drop_reason] += 1
            self._hold(flow)
            n += 1
        return n

    def _hold(self, flow: flow_pb2.Flow) -> None:
        self.flows.append(flow)
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
        for flow in reversed(self.flows):
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
