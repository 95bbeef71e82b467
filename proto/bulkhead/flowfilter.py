"""Flow filters (all fields combined with AND), one implementation for the agent and the relay."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from bulkhead import labelmatch
from bulkhead.v1 import flow_pb2

FLOW_TYPES = ("l7", "l3-l4", "dns", "http")
_STATUS = re.compile(r"^(\d{3}|[1-5]\+)$")


def check_http_path(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable --http-path regular expression, or None."""
    try:
        re.compile(pattern)
    except re.error as e:
        return str(e)
    return None


def check_http_status(value: str) -> bool:
    return bool(_STATUS.match(value))


def _type_matches(wanted: str, flow: flow_pb2.Flow) -> bool:
    """l7: every flow of a proxy (HTTP and DNS, as Hubble's `--type l7`); dns: the DNS
    proxy's; http: the HTTP proxy's (Hubble's `--protocol http`); l3-l4: the datapath's."""
    wanted = wanted.lower()
    if wanted == "dns":
        return flow.type == "L7" and flow.l7.HasField("dns")
    if wanted == "http":
        return flow.type == "L7" and flow.l7.HasField("http")
    return (flow.type == "L7") == (wanted == "l7")


def _status_matches(wanted: str, code: int) -> bool:
    if wanted.endswith("+"):
        return code // 100 == int(wanted[0])
    return str(code) == wanted


def _http_matches(f: flow_pb2.FlowFilter, flow: flow_pb2.Flow) -> bool:
    if not (f.http_method or f.http_path or f.http_status):
        return True
    if flow.type != "L7":
        return False
    http = flow.l7.http
    return ((not f.http_method or http.method.upper() == f.http_method.upper())
            and (not f.http_path or re.search(f.http_path, urlsplit(http.url).path) is not None)
            and (not f.http_status or _status_matches(f.http_status, http.code)))


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
            and (not f.since_ns or flow.time_ns >= f.since_ns)
            and (not f.type or _type_matches(f.type, flow))
            and _http_matches(f, flow))


def needs_enrichment(f: flow_pb2.FlowFilter) -> bool:
    """Filters on names and labels can only be applied after the relay has filled them in."""
    return bool(f.from_labels or f.to_labels or f.from_pod or f.to_pod)
