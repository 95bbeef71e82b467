"""DNS flows: the DNS proxy's records as Hubble-like L7 DNS flows, their lines and JSON, and
`--type dns` (shared by the agent and the relay)."""

from __future__ import annotations

from typing import Any

from bulkhead import flowfilter
from bulkhead.v1 import flow_pb2
from cli.commands import observe
from nodeagent.flowstore import FlowStore

CLIENT = 25601


def store() -> FlowStore:
    pods = {"10.0.0.6": ("default", "client")}
    return FlowStore("n1", 100, lambda identity: [f"k8s:id={identity}"], pods.get,
                     endpoint=lambda ip: (7, CLIENT) if ip == "10.0.0.6" else None)


def record(kind: str, verdict: str, **kw: Any) -> dict[str, Any]:
    """A flow as nodeagent.dns.proxy records it."""
    return {"time_ns": 1_795_000_000_123_456_789, "type": kind, "verdict": verdict,
            "client": ("10.0.0.6", 40000), "server": ("169.254.1.1", 53),
            "query": "api.world.test.", "qtypes": ["A"], "ips": [], "ttl": 0, "rcode": "",
            "cnames": [], "latency_ns": 0, **kw}


def held(flows: FlowStore) -> list[flow_pb2.Flow]:
    return flows.last(10, lambda f: True)


def test_query_and_answer_read_like_hubble() -> None:
    flows = store()
    flows.add_dns(record("request", "FORWARDED"))
    flows.add_dns(record("response", "FORWARDED", ips=["192.0.2.201"], ttl=30,
                         rcode="NOERROR", latency_ns=1_000_000))
    request, response = held(flows)
    assert request.type == "L7" and request.endpoint_id == 7
    assert observe.line(request).endswith(
        ": default/client:40000 (ID:25601) -> 169.254.1.1:53 (ID:1) "
        "dns-request proxy FORWARDED (DNS Query api.world.test. A)")
    assert observe.line(response).endswith(
        ": 169.254.1.1:53 (ID:1) -> default/client:40000 (ID:25601) "
        "dns-response proxy FORWARDED (DNS Answer \"192.0.2.201\" TTL: 30 "
        "(Proxy api.world.test. A))")


def test_a_refused_query_is_dropped_with_its_rcode() -> None:
    flows = store()
    flows.add_dns(record("response", "DROPPED", rcode="REFUSED"))
    flow, = held(flows)
    assert flow.drop_reason == "Policy denied (DNS)"
    assert "RCode: REFUSED" in observe.line(flow)
    assert observe.as_json(flow)["l7"] == {
        "type": "response", "latency_ns": 0,
        "dns": {"query": "api.world.test.", "qtypes": ["A"], "ips": [], "ttl": 0,
                "rcode": "REFUSED", "cnames": []}}


def test_type_filter_dns() -> None:
    flows = store()
    flows.add_dns(record("request", "FORWARDED"))
    dns_flow, = held(flows)
    http_flow = flow_pb2.Flow(type="L7")
    http_flow.l7.http.method = "GET"
    datapath = flow_pb2.Flow(type="L3_L4")

    def kept(wanted: str) -> list[bool]:
        return [flowfilter.matches(f, flow_pb2.FlowFilter(type=wanted))
                for f in (dns_flow, http_flow, datapath)]

    assert kept("dns") == [True, False, False]
    assert kept("l7") == [True, True, False]
    assert kept("l3-l4") == [False, False, True]
