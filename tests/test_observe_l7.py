"""L7 flows: the proxy's records as Hubble-like flows, their lines and JSON, and the
--type / --http-* filters (shared by the agent and the relay)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from bulkhead import flowfilter
from bulkhead.v1 import flow_pb2
from cli.commands import observe
from nodeagent.flowstore import FlowStore

TIEFIGHTER, DEATHSTAR = 25601, 25873


def store() -> FlowStore:
    pods = {"10.0.0.6": ("default", "tiefighter"), "10.0.1.23": ("default", "deathstar-1")}
    return FlowStore("n1", 100, lambda identity: [f"k8s:id={identity}"], pods.get,
                     endpoint=lambda ip: (7, DEATHSTAR) if ip == "10.0.1.23" else None)


def record(kind: str, verdict: str, method: str, path: str, code: int = 0) -> dict[str, Any]:
    """A flow as nodeagent.proxy.http1 records it (ingress L7 on the deathstar)."""
    flow: dict[str, Any] = {
        "time_ns": 1_795_000_000_123_456_789, "type": kind, "verdict": verdict,
        "endpoint": "10.0.1.23", "direction": "ingress", "peer": TIEFIGHTER,
        "src": ["10.0.0.6", 41234], "dst": ["10.0.1.23", 80], "why": "", "summary": "",
        "http": {"method": method, "url": f"http://10.0.1.23{path}", "protocol": "HTTP/1.1",
                 "code": code, "headers": [{"key": "Authorization", "value": "[redacted]"},
                                           {"key": "X-Wing", "value": "1"}]}}
    if kind == "response":
        flow["latency_ns"] = 2_400_000
    return flow


def test_denied_request_reads_like_hubble() -> None:
    flow = store().convert_l7(record("request", "DROPPED", "PUT", "/v1/exhaust-port"))
    assert flow.type == "L7" and flow.endpoint_id == 7
    assert observe.line(flow).endswith(
        ": default/tiefighter:41234 (ID:25601) -> default/deathstar-1:80 (ID:25873) "
        "http-request DROPPED (HTTP/1.1 PUT http://10.0.1.23/v1/exhaust-port)")


def test_response_goes_from_the_server_with_code_and_latency() -> None:
    flow = store().convert_l7(record("response", "FORWARDED", "POST", "/v1/request-landing",
                                     200))
    assert observe.line(flow).endswith(
        ": default/deathstar-1:80 (ID:25873) -> default/tiefighter:41234 (ID:25601) "
        "http-response FORWARDED (HTTP/1.1 200 2ms (POST http://10.0.1.23/v1/request-landing))")


def test_json_has_l7_and_headers_only_when_asked() -> None:
    flow = store().convert_l7(record("response", "FORWARDED", "POST", "/v1/request-landing",
                                     200))
    data = observe.as_json(flow)
    assert data["type"] == "L7"
    assert data["l7"] == {"type": "response", "latency_ns": 2_400_000,
                          "http": {"method": "POST", "protocol": "HTTP/1.1", "code": 200,
                                   "url": "http://10.0.1.23/v1/request-landing"}}
    headers = observe.as_json(flow, headers=True)["l7"]["http"]["headers"]
    assert headers == [{"key": "Authorization", "value": "[redacted]"},
                       {"key": "X-Wing", "value": "1"}]
    assert "X-Wing:1" in observe.line(flow, headers=True)


def test_garbage_is_a_dropped_request_without_http() -> None:
    raw = record("request", "DROPPED", "", "")
    del raw["http"]
    raw["summary"] = "not HTTP/1.x (invalid method)"
    flow = store().convert_l7(raw)
    assert observe.line(flow).endswith("http-request DROPPED (not HTTP/1.x (invalid method))")


def matching(**f: Any) -> list[str]:
    s = store()
    flows = [
        s.convert_l7(record("request", "FORWARDED", "POST", "/v1/request-landing")),
        s.convert_l7(record("response", "FORWARDED", "POST", "/v1/request-landing", 200)),
        s.convert_l7(record("request", "DROPPED", "PUT", "/v1/exhaust-port")),
        flow_pb2.Flow(type="L3_L4", verdict="FORWARDED", protocol="TCP"),
        flow_pb2.Flow(verdict="DROPPED", protocol="TCP"),  # an older agent's: no type
    ]
    names = ["post", "200", "put", "l4", "old"]
    return [n for n, fl in zip(names, flows, strict=True)
            if flowfilter.matches(fl, flow_pb2.FlowFilter(**f))]


def test_filters() -> None:
    assert matching(type="l7") == ["post", "200", "put"]
    assert matching(type="l3-l4") == ["l4", "old"]
    assert matching(http_method="put") == ["put"]
    assert matching(http_path="^/v1/request") == ["post", "200"]
    assert matching(http_path="exhaust") == ["put"]
    assert matching(http_status="200") == ["200"]
    assert matching(http_status="4+") == ["put"]  # a denied request is answered 403
    assert matching(http_status="2+", verdict="FORWARDED") == ["200"]


def args(**over: Any) -> argparse.Namespace:
    base = dict(last=20, follow=False, from_label=[], to_label=[], from_pod="", to_pod="",
                to_service="", from_ip="", to_ip="", from_identity=0, to_identity=0,
                verdict=None, port=0, protocol="", node="", since="", flow_type="l7",
                http_method="GET", http_path="^/v1/", http_status="4+")
    base.update(over)
    return argparse.Namespace(**base)


def test_request_carries_the_l7_filters() -> None:
    f = observe.build_request(args()).filter
    assert (f.type, f.http_method, f.http_path, f.http_status) == ("l7", "GET", "^/v1/", "4+")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("http_path", "([", "--http-path: not a regular expression"),
    ("http_status", "4xx", "--http-status: expected a code like 403 or a class like 4+"),
])
def test_bad_l7_filters_are_refused_by_name(field: str, value: str, message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        observe.build_request(args(**{field: value}))
    assert message in str(exc.value)
