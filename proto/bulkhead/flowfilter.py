"""Flow filters (all fields combined with AND), one implementation for the agent and the relay."""

from __future__ import annotations

from bulkhead import labelmatch
from bulkhead.v1 import flow_pb2


def _ref(wanted: str) -> tuple[str, str]:
    """`NS/NAME` -> (NS, NAME); a bare `NAME` is in "default" (as kubectl reads it)."""
    namespace, slash, name = wanted.rpartition("/")
    return (namespace if slash else "default"), name


def _pod_matches(wanted: str, peer: flow_pb2.FlowPeer) -> bool:
    return (peer.namespace, peer.pod) == _ref(wanted)


def _service_matches(wanted: str, flow: flow_pb2.Flow) -> bool:
    """The connection was sent to that service (a flow to a backend's pod IP names none)."""
    svc = flow.destination_service
    return flow.HasField("destination_service") and (svc.namespace, svc.name) == _ref(wanted)


def matches(flow: flow_pb2.Flow, f: flow_pb2.FlowFilter) -> bool:
    src, dst = flow.source, flow.destination
    return (labelmatch.matches_all(f.from_labels, src.labels)
            and labelmatch.matches_all(f.to_labels, dst.labels)
            and (not f.from_pod or _pod_matches(f.from_pod, src))
            and (not f.to_pod or _pod_matches(f.to_pod, dst))
            and (not f.to_service or _service_matches(f.to_service, flow))
            and (not f.from_ip or src.ip == f.from_ip)
            and (not f.to_ip or dst.ip == f.to_ip)
            and (not f.from_identity or src.identity == f.from_identity)
            and (not f.to_identity or dst.identity == f.to_identity)
            and (not f.verdict or flow.verdict.upper() == f.verdict.upper())
            and (not f.port or f.port in (src.port, dst.port))
            and (not f.protocol or flow.protocol.upper() == f.protocol.upper())
            and (not f.node or flow.node == f.node)
            and (not f.since_ns or flow.time_ns >= f.since_ns))


def needs_enrichment(f: flow_pb2.FlowFilter) -> bool:
    """Filters on names and labels can only be applied after the relay has filled them in."""
    return bool(f.from_labels or f.to_labels or f.from_pod or f.to_pod)
