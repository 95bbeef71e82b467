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
                         "(ID:25873) policy-verdict:none INGRESS DROPPED (TCP Flags: SYN) "
                         "Policy denied")


def test_verdict_label_says_whether_a_rule_decided() -> None:
    """Hubble's meaning: L3-L4 only when a rule matched; a connection no policy decided
    (default allow, as `policy trace` calls it) is `none`, FORWARDED or not."""
    allowed = via_service()
    assert "policy-verdict:none EGRESS FORWARDED" in line(allowed)
    assert as_json(allowed)["policy_match"] == "none"
    allowed.policy_match = True
    assert "policy-verdict:L3-L4 EGRESS FORWARDED" in line(allowed)
    assert as_json(allowed)["policy_match"] == "L3-L4"


def test_same_node_connection_lines_differ_by_direction() -> None:
    """A connection between two pods of one node is seen on egress and on ingress: the two
    lines say which (they were identical)."""
    egress = via_service()
    ingress = flow_pb2.Flow()
    ingress.CopyFrom(egress)
    ingress.direction = "ingress"
    assert line(egress, node_name=True) != line(ingress, node_name=True)
    assert " EGRESS FORWARDED" in line(egress) and " INGRESS FORWARDED" in line(ingress)


def test_json_has_the_documented_keys() -> None:
    data = as_json(xwing_drop())
    assert set(data) == {"time", "type", "node", "verdict", "drop_reason", "source",
                         "destination", "protocol", "tcp_flags", "direction", "policy_match",
                         "destination_service"}
    assert data["type"] == "L3_L4"
    assert set(data["source"]) == {"namespace", "pod", "ip", "port", "identity", "labels",
                                   "node_name"}
    assert data["time"].endswith(".123456789Z")
    assert data["destination_service"] is None  # not sent to a service


def via_service(pod: str = "deathstar-1") -> flow_pb2.Flow:
    """The tiefighter's connection to the deathstar service's ClusterIP, translated to a
    backend (or, with no pod, dropped at the ClusterIP for want of one)."""
    return flow_pb2.Flow(
        time_ns=1_795_000_000_123_456_789, node="n1", verdict="FORWARDED", protocol="TCP",
        tcp_flags=["SYN"], direction="egress",
        source=flow_pb2.FlowPeer(namespace="default", pod="tiefighter", ip="10.0.0.6",
                                 port=40113, identity=25602),
        destination=flow_pb2.FlowPeer(namespace="default" if pod else "", pod=pod,
                                      ip="10.0.1.7" if pod else "10.96.0.10", port=80,
                                      identity=25873 if pod else 2),
        destination_service=flow_pb2.FlowService(namespace="default", name="deathstar"))


def test_line_names_the_service_where_hubble_does() -> None:
    """Hubble names a host by its pod, else by its service, else by its IP: a translated
    connection shows the backend pod; a ClusterIP without a backend shows the service."""
    assert ": default/tiefighter:40113 (ID:25602) -> default/deathstar-1:80 (ID:25873) " \
        in line(via_service())
    assert ": default/tiefighter:40113 (ID:25602) -> default/deathstar:80 (ID:2) " \
        in line(via_service(pod=""))


def test_json_names_the_destination_service() -> None:
    assert as_json(via_service())["destination_service"] == {"namespace": "default",
                                                              "name": "deathstar"}


def test_to_service_filter() -> None:
    f = flow_pb2.FlowFilter
    sent = via_service()
    assert flowfilter.matches(sent, f(to_service="default/deathstar"))
    assert flowfilter.matches(sent, f(to_service="deathstar"))  # no namespace: "default"
    assert not flowfilter.matches(sent, f(to_service="empire/deathstar"))
    assert not flowfilter.matches(sent, f(to_service="default/deathstar-1"))
    assert not flowfilter.matches(sent, f(to_service="default/deathstar", verdict="DROPPED"))
    # the same backend dialled by its pod IP: no service named, so not matched
    direct = via_service()
    direct.ClearField("destination_service")
    assert flowfilter.matches(direct, f(to_pod="default/deathstar-1"))
    assert not flowfilter.matches(direct, f(to_service="default/deathstar"))


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


def test_line_says_a_flow_passed_under_a_clustermesh_sync_grace() -> None:
    flow = xwing_drop()
    flow.verdict, flow.drop_reason, flow.mesh_sync_grace = "FORWARDED", "", True
    assert line(flow).endswith("policy-verdict:none INGRESS FORWARDED (TCP Flags: SYN) "
                               "(clustermesh sync grace)")
