"""How `bulkhead observe` prints flows and parses --since (the relay is tested in the lab)."""

from __future__ import annotations

from bulkhead import flowfilter
from bulkhead.v1 import flow_pb2
from cli.commands.observe import as_json, line, since_ns


def xwing_drop() -> flow_pb2.Flow:
    return flow_pb2.Flow(
        time_ns=1_795_000_000_123_456_789, node="n1", verdict="DROPPED",
        drop_reason="Policy denied", protocol="TCP", tcp_flags=["SYN"], direction="ingress",
        source=flow_pb2.FlowPeer(namespace="default", pod="xwing", ip="10.0.0.5", port=40112,
                                 identity=25601, labels=["k8s:org=alliance", "k8s:class=xwing"]),
        destination=flow_pb2.FlowPeer(namespace="default", pod="deathstar-1", ip="10.0.1.7",
                                      port=80, identity=25873,
                                      labels=["k8s:org=empire", "k8s:class=deathstar"]))


def test_line_reads_like_hubble() -> None:
    text = line(xwing_drop())
    assert text.endswith(": default/xwing:40112 (ID:25601) -> default/deathstar-1:80 "
                         "(ID:25873) policy-verdict:none DROPPED (TCP Flags: SYN) Policy denied")


def test_json_has_the_documented_keys() -> None:
    data = as_json(xwing_drop())
    assert set(data) == {"time", "node", "verdict", "drop_reason", "source", "destination",
                         "protocol", "tcp_flags", "direction"}
    assert set(data["source"]) == {"namespace", "pod", "ip", "port", "identity", "labels"}
    assert data["time"].endswith(".123456789Z")


def test_since_accepts_durations_and_times() -> None:
    assert since_ns("5m", now=1000.0) == int(700 * 1e9)
    assert since_ns("2026-11-26T17:00:00Z") == int(1795712400 * 1e9)
    assert since_ns("") == 0


def test_filters_combine_with_and() -> None:
    flow = xwing_drop()
    f = flow_pb2.FlowFilter
    assert flowfilter.matches(flow, f(from_labels=["org=alliance"], verdict="dropped"))
    assert flowfilter.matches(flow, f(from_pod="xwing", to_pod="default/deathstar-1", port=80))
    assert not flowfilter.matches(flow, f(from_labels=["org=alliance"], verdict="FORWARDED"))
    assert not flowfilter.matches(flow, f(from_labels=["k8s:org=empire"]))
    assert flowfilter.matches(flow, f(to_identity=25873, protocol="tcp", node="n1"))
    assert not flowfilter.matches(flow, f(since_ns=flow.time_ns + 1))
