"""The agent's pure translations: received objects -> map entries, raw flows -> API flows."""

from __future__ import annotations

import pytest

from bulkhead.v1 import flow_pb2, types_pb2
from bulkhead.v1 import subscription_pb2 as pb
from nodeagent import desired
from nodeagent.datapath import (
    Backend,
    Direction,
    IpcacheEntry,
    ObsPoint,
    PolicyEntry,
    Reason,
    ServiceFrontend,
    Verdict,
)
from nodeagent.datapath.flows import decode
from nodeagent.datapath.layout import FLOW_EVENT
from nodeagent.datapath.models import Flow
from nodeagent.flowstore import FlowStore, ServiceNames, matcher

NODES = {
    "n1": types_pb2.Node(name="n1", underlay_ip="192.168.1.1"),
    "n2": types_pb2.Node(name="n2", underlay_ip="192.168.1.2"),
}


def entry(prefix: str, identity: int, node: str, tunnel: str = "") -> types_pb2.IPCacheEntry:
    return types_pb2.IPCacheEntry(prefix=prefix, identity=identity, node=node,
                                  tunnel=types_pb2.TunnelEndpoint(ip=tunnel, port=8472))


def test_ipcache_local_remote_and_nodes() -> None:
    got = desired.ipcache("n1", NODES, [
        entry("10.0.1.5/32", 300, "n1", "192.168.1.1"),
        entry("10.0.2.5/32", 301, "n2", "192.168.1.2"),
        entry("10.0.2.6/32", 302, "n2"),  # no tunnel given: the node's underlay IP
    ])
    assert sorted(got, key=lambda e: e.prefix) == [
        IpcacheEntry("10.0.1.5/32", 300, None),
        IpcacheEntry("10.0.2.5/32", 301, "192.168.1.2"),
        IpcacheEntry("10.0.2.6/32", 302, "192.168.1.2"),
        IpcacheEntry("192.168.1.2/32", 6, None),
    ]


def test_cidr_identities_become_ipcache_entries_of_their_prefixes() -> None:
    """A policy's CIDR identity selects its prefix in the datapath (no tunnel: the node's
    routing); other identities, IPv6 prefixes and unparsable labels add nothing."""
    got = desired.cidr_entries([
        types_pb2.Identity(id=16777300, labels=["cidr:192.0.2.201/32"]),
        types_pb2.Identity(id=16777301, labels=["cidr:198.51.100.0/24"]),
        types_pb2.Identity(id=16777302, labels=["cidr:2001:db8::/64"]),
        types_pb2.Identity(id=16777303, labels=["fqdn:api.world.test"]),
        types_pb2.Identity(id=300, labels=["k8s:app=web"]),
        types_pb2.Identity(id=16777304, labels=["cidr:not-a-prefix"]),
    ])
    assert got == [IpcacheEntry("192.0.2.201/32", 16777300, None),
                   IpcacheEntry("198.51.100.0/24", 16777301, None)]


def test_policy_entries() -> None:
    policy = pb.IdentityPolicy(identity=300, ingress_enforced=True, entries=[
        pb.PolicyEntry(direction=pb.PolicyEntry.INGRESS, peer=301, protocol=6, port_lo=80,
                       port_hi=80),
        pb.PolicyEntry(direction=pb.PolicyEntry.EGRESS, peer=0, verdict=pb.PolicyEntry.DENY),
    ])
    assert desired.policy_entries(policy) == [
        PolicyEntry(Direction.INGRESS, 301, 6, 80, 80, deny=False),
        PolicyEntry(Direction.EGRESS, 0, 0, 0, 0, deny=True),
    ]


def test_flow_conversion_and_filters() -> None:
    labels = {300: ["k8s:class=deathstar"], 302: ["k8s:class=xwing"]}
    store = FlowStore("n1", 3, lambda i: labels.get(i, []),
                      lambda ip: ("default", "deathstar") if ip == "10.0.1.5" else None)
    raw = Flow(time_ns=1, saddr="10.0.2.7", daddr="10.0.1.5", sport=4000, dport=80,
               protocol=6, tcp_flags=0x02, src_identity=302, dst_identity=300, ep_id=4,
               direction=Direction.INGRESS, verdict=Verdict.DROPPED,
               reason=Reason.POLICY_DEFAULT_DENY, obs_point=ObsPoint.FROM_OVERLAY)
    assert store.add([raw] * 5) == 5
    held = store.last(10, matcher(flow_pb2.FlowFilter()))
    assert [f.sequence for f in held] == [3, 4, 5]  # capacity 3: the newest
    f = held[-1]
    assert (f.verdict, f.drop_reason, list(f.tcp_flags), f.direction) == (
        "DROPPED", "Policy denied", ["SYN"], "ingress")
    assert (f.destination.pod, f.destination.port, list(f.source.labels)) == (
        "deathstar", 80, ["k8s:class=xwing"])
    assert f.time_ns > 1_000_000_000_000_000_000  # wall clock
    keep = matcher(flow_pb2.FlowFilter(from_labels=["class=xwing"], to_pod="deathstar",
                                       verdict="dropped", port=80, protocol="tcp"))
    assert keep(f)
    assert not matcher(flow_pb2.FlowFilter(to_identity=301))(f)
    assert not matcher(flow_pb2.FlowFilter(), after_sequence=5)(f)


def test_service_frontends() -> None:
    """One frontend per TCP/UDP port with the backends of that port, sorted by address so
    every node fills the same slots; headless services have none; bad input names the field."""
    svc = types_pb2.Service(
        namespace="default", name="deathstar", id=4, cluster_ip="10.96.0.20",
        client_ip_affinity=True,
        ports=[types_pb2.ServicePort(name="http", port=80, protocol="TCP", target_port=8080),
               types_pb2.ServicePort(name="dns", port=53, protocol="UDP", target_port=53),
               types_pb2.ServicePort(name="sctp", port=9, protocol="SCTP", target_port=9)],
        backends=[
            types_pb2.ServiceBackend(ip="10.0.2.9", port=8080, protocol="TCP", port_name="http"),
            types_pb2.ServiceBackend(ip="10.0.10.1", port=8080, protocol="TCP",
                                     port_name="http"),
            types_pb2.ServiceBackend(ip="10.0.2.9", port=8080, protocol="TCP", port_name="http"),
            types_pb2.ServiceBackend(ip="10.0.2.9", port=5353, protocol="UDP", port_name="dns"),
        ])
    assert desired.service_frontends(svc) == [
        ServiceFrontend("10.96.0.20", 80, 6, 4,
                        (Backend("10.0.2.9", 8080), Backend("10.0.10.1", 8080)), affinity=True),
        ServiceFrontend("10.96.0.20", 53, 17, 4, (Backend("10.0.2.9", 5353),), affinity=True),
    ]
    headless = types_pb2.Service(namespace="default", name="h", id=5, headless=True,
                                 ports=svc.ports, backends=svc.backends)
    assert desired.service_frontends(headless) == []
    bad = types_pb2.Service(namespace="default", name="b", id=6, cluster_ip="fd00::1",
                            ports=svc.ports)
    with pytest.raises(ValueError, match="default/b: cluster_ip"):
        desired.service_frontends(bad)


def test_flows_name_the_service_by_its_frontend_id() -> None:
    """A raw flow carries the service's frontend id; the API flow names the service as the
    agent received it, follows a name taking over an id, and names none for an unknown id."""
    services = {"default/deathstar": types_pb2.Service(id=21, namespace="default",
                                                       name="deathstar")}
    store = FlowStore("n1", 10, lambda i: [], lambda ip: None, ServiceNames(services))

    def sent(service_id: int) -> flow_pb2.Flow:
        raw = Flow(time_ns=1, saddr="10.0.1.6", daddr="10.0.1.5", sport=4000, dport=80,
                   protocol=6, tcp_flags=0x02, src_identity=301, dst_identity=300, ep_id=5,
                   direction=Direction.EGRESS, verdict=Verdict.FORWARDED, reason=Reason.NONE,
                   obs_point=ObsPoint.FROM_POD, service_id=service_id)
        store.add([raw])
        return store.last(1, matcher(flow_pb2.FlowFilter()))[0]

    f = sent(21)
    assert (f.destination_service.namespace, f.destination_service.name) == (
        "default", "deathstar")
    assert matcher(flow_pb2.FlowFilter(to_service="default/deathstar"))(f)
    assert not sent(0).HasField("destination_service")  # not sent to a service
    assert not sent(99).HasField("destination_service")  # an id not (or no longer) received
    # the service deleted and its id given to another one
    del services["default/deathstar"]
    services["empire/deathstar"] = types_pb2.Service(id=21, namespace="empire", name="deathstar")
    assert sent(21).destination_service.namespace == "empire"
    assert not matcher(flow_pb2.FlowFilter(to_service="default/deathstar"))(sent(21))


def test_flows_are_enriched_when_read_and_built_when_served() -> None:
    """What a flow names (labels, pods) is looked up as it is read from the ring buffer, so a
    pod deleted later is still named; its API message is built only when it is served (most
    flows of a busy node never are), once."""
    labels = {300: ["k8s:class=deathstar"], 302: ["k8s:class=xwing"]}
    pods = {"10.0.1.5": ("default", "deathstar")}
    store = FlowStore("n1", 100, lambda i: list(labels.get(i, [])), pods.get)
    raw = Flow(time_ns=1, saddr="10.0.2.7", daddr="10.0.1.5", sport=4000, dport=80,
               protocol=6, tcp_flags=0x02, src_identity=302, dst_identity=300, ep_id=4,
               direction=Direction.INGRESS, verdict=Verdict.FORWARDED, reason=Reason.NONE,
               obs_point=ObsPoint.FROM_OVERLAY)
    assert store.add([raw] * 50) == 50
    assert [held.flow is None for held in store.flows] == [True] * 50
    pods.clear()
    labels.clear()
    newest = store.last(2, matcher(flow_pb2.FlowFilter()))
    assert [f.sequence for f in newest] == [49, 50]
    assert (newest[1].destination.pod, list(newest[1].source.labels)) == (
        "deathstar", ["k8s:class=xwing"])
    assert sum(held.flow is not None for held in store.flows) == 2
    assert store.last(1, matcher(flow_pb2.FlowFilter()))[0] is newest[1]


def test_a_ring_buffer_record_decodes_to_its_flow() -> None:
    record = FLOW_EVENT.pack(123, bytes([10, 0, 2, 7]), bytes([10, 0, 1, 5]), 302, 300, 4,
                             0xA00F, 0x5000, 6, 0x12, 0, 1, 2, 1, 0, 21)   # ports 4000, 80
    assert decode(record) == Flow(
        time_ns=123, saddr="10.0.2.7", daddr="10.0.1.5", sport=4000, dport=80, protocol=6,
        tcp_flags=0x12, src_identity=302, dst_identity=300, ep_id=4,
        direction=Direction.INGRESS, verdict=Verdict.DROPPED,
        reason=Reason.POLICY_DEFAULT_DENY, obs_point=ObsPoint.FROM_OVERLAY, service_id=21)
    with pytest.raises(ValueError):
        decode(FLOW_EVENT.pack(0, bytes(4), bytes(4), 0, 0, 0, 0, 0, 6, 0, 7, 0, 0, 0, 0, 0))
