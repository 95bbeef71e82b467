"""ClusterIP services in the datapath (no control plane): frontends and backends written
through the Datapath API on both nodes, as the agent writes them from received services."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import pytest

from nodeagent.datapath import (
    Backend,
    Direction,
    Flow,
    PolicyEntry,
    Reason,
    ServiceFrontend,
    Verdict,
)
from tests.datapath.topology import TIEFIGHTER, Cluster, Pod, curl, many, probe, udp_names

pytestmark = pytest.mark.datapath

VIP = "10.96.0.10"
SVC_ID = 7


def backend(c: Cluster, name: str, port: int = 80) -> Backend:
    return Backend(c.pods[name].ip, port)


def put(c: Cluster, *frontends: ServiceFrontend, service_id: int = SVC_ID) -> None:
    """Write one service on every node (each node's agent holds every service)."""
    for node in c.nodes:
        c.dp(node).update_service(service_id, frontends)


def web(c: Cluster, *names: str, affinity: bool = False, port: int = 80) -> ServiceFrontend:
    return ServiceFrontend(VIP, port, 6, SVC_ID, tuple(backend(c, n) for n in names),
                           affinity=affinity)


def flows(c: Cluster, node: str, since: int, **want: object) -> list[Flow]:
    got = c.dp(node).read_flows(timeout_ms=50)
    return [f for f in got
            if f.time_ns >= since and all(getattr(f, k) == v for k, v in want.items())]


@pytest.fixture
def svc(clean_policy: Cluster) -> Iterator[Cluster]:
    """No services before and after the test."""
    for node in clean_policy.nodes:
        clean_policy.dp(node).sync_services([])
    try:
        yield clean_policy
    finally:
        for node in clean_policy.nodes:
            clean_policy.dp(node).sync_services([])


@pytest.mark.parametrize("client", ["tiefighter", "tiefighter2"], ids=["from-n1", "from-n2"])
@pytest.mark.parametrize("target", ["deathstar1", "deathstar2"])
def test_clusterip_reaches_backend(svc: Cluster, client: str, target: str) -> None:
    """Same node and across nodes: the answer comes from the backend, through the ClusterIP
    (the client's socket only ever talks to VIP:80, so replies were translated back)."""
    c = svc
    put(c, web(c, target))
    assert many(c.pods[client], VIP, 80, 5) == {target: 5}
    assert curl(c.pods[client], VIP, 80) == 0


def test_connections_spread_and_stay(svc: Cluster) -> None:
    """200 new connections reach both backends; each completes whole on one of them."""
    c = svc
    start = time.monotonic_ns()
    put(c, web(c, "deathstar1", "deathstar2"))
    got = many(c.pods["tiefighter"], VIP, 80, 200)
    assert "failed" not in got
    assert set(got) == {"deathstar1", "deathstar2"}
    assert sum(got.values()) == 200
    assert min(got.values()) >= 40, got  # a random choice per connection, not one backend
    # conntrack holds the choice per connection: the client -> ClusterIP entries name a backend
    chosen = {e.nat for e in c.dp("n1").ct()
              if e.daddr == VIP and e.saddr == c.pods["tiefighter"].ip}
    assert chosen == {f"{c.pods['deathstar1'].ip}:80", f"{c.pods['deathstar2'].ip}:80"}
    # the client's flows name the backend and carry the service's frontend id
    sent = flows(c, "n1", start, saddr=c.pods["tiefighter"].ip, direction=Direction.EGRESS,
                 verdict=Verdict.FORWARDED)
    assert {f.daddr for f in sent} == {c.pods["deathstar1"].ip, c.pods["deathstar2"].ip}
    assert {f.service_id for f in sent} == {SVC_ID}


def test_client_ip_affinity(svc: Cluster) -> None:
    c = svc
    put(c, web(c, "deathstar1", "deathstar2", affinity=True))
    got = many(c.pods["tiefighter"], VIP, 80, 30)
    assert len(got) == 1 and "failed" not in got and sum(got.values()) == 30


@pytest.mark.parametrize("target", ["deathstar1", "deathstar2"])
def test_udp_service(svc: Cluster, target: str) -> None:
    c = svc
    put(c, ServiceFrontend(VIP, 53, 17, SVC_ID, (backend(c, target, 5353),)))
    assert probe(c.pods["tiefighter"], "udp", VIP, 53) == "ok"
    assert probe(c.pods["tiefighter"], "udp", VIP, 54) != "ok"  # not a frontend


@pytest.mark.parametrize("target", ["deathstar1", "deathstar2"])
def test_policy_applies_to_backend(svc: Cluster, target: str) -> None:
    """Translate first, then apply policy: the backend's ingress rule allows only the
    tiefighter on 80, so the xwing is denied through the ClusterIP as it is to the pod."""
    c = svc
    start = time.monotonic_ns()
    dst = c.pods[target]
    c.dp(dst.node).sync_policy(
        dst.ep_id, [PolicyEntry(Direction.INGRESS, TIEFIGHTER, protocol=6, port_lo=80,
                                port_hi=80)], ingress_enforced=True, egress_enforced=False)
    put(c, web(c, target))
    assert curl(c.pods["tiefighter"], VIP, 80) == 0
    assert curl(c.pods["xwing"], VIP, 80) == 28
    assert curl(c.pods["xwing"], dst.ip, 80) == 28
    denied = flows(c, dst.node, start, saddr=c.pods["xwing"].ip, verdict=Verdict.DROPPED)
    assert denied and {f.reason for f in denied} == {Reason.POLICY_DEFAULT_DENY}
    assert {(f.daddr, f.dport) for f in denied} == {(dst.ip, 80)}  # the backend, not the VIP


def test_egress_policy_sees_backend_port(svc: Cluster) -> None:
    """The client's egress policy is checked against the backend's identity and target port."""
    c = svc
    tie = c.pods["tiefighter"]
    c.dp(tie.node).sync_policy(
        tie.ep_id, [PolicyEntry(Direction.EGRESS, 300, protocol=6, port_lo=81, port_hi=81)],
        ingress_enforced=False, egress_enforced=True)
    put(c, ServiceFrontend(VIP, 8080, 6, SVC_ID, (backend(c, "deathstar1", 81),)),
        ServiceFrontend(VIP, 8081, 6, SVC_ID, (backend(c, "deathstar1", 80),)))
    assert probe(tie, "tcp", VIP, 8080) == "ok"
    assert probe(tie, "tcp", VIP, 8081) == "timeout"


def test_no_backend_answers_at_once(svc: Cluster) -> None:
    """A frontend without backends is refused (ICMP port unreachable), not left to time out,
    with a DROPPED flow "no service backend"."""
    c = svc
    start = time.monotonic_ns()
    tie = c.pods["tiefighter"]
    put(c, web(c), ServiceFrontend(VIP, 53, 17, SVC_ID, ()))
    assert probe(tie, "tcp", VIP, 80, timeout=5.0) == "refused"
    assert curl(tie, VIP, 80, timeout=5.0) == 7  # couldn't connect
    assert probe(tie, "udp", VIP, 53, timeout=5.0) == "refused"
    drops = flows(c, "n1", start, saddr=tie.ip, daddr=VIP, verdict=Verdict.DROPPED)
    assert drops and {f.reason for f in drops} == {Reason.NO_SERVICE_BACKEND}
    assert {f.service_id for f in drops} == {SVC_ID}
    assert {f.dport for f in drops} == {80, 53}
    counters = {(k.direction, k.reason): k.packets for k in c.dp("n1").counters(tie.ep_id)}
    assert counters[(Direction.EGRESS, Reason.NO_SERVICE_BACKEND)] >= 3
    # the service getting a backend makes it reachable
    put(c, web(c, "deathstar2"))
    assert probe(tie, "tcp", VIP, 80) == "ok"


def test_removed_backend_gets_no_new_connections(svc: Cluster) -> None:
    c = svc
    tie: Pod = c.pods["tiefighter"]
    put(c, web(c, "deathstar1", "deathstar2"))
    assert set(many(tie, VIP, 80, 40)) == {"deathstar1", "deathstar2"}
    put(c, web(c, "deathstar2"))
    assert many(tie, VIP, 80, 40) == {"deathstar2": 40}
    put(c, web(c, "deathstar1"))
    assert many(tie, VIP, 80, 40) == {"deathstar1": 40}


def test_maps_hold_what_was_written(svc: Cluster) -> None:
    """The dump shows frontends with their backends in slot order; writing the same service
    again writes nothing; removing it leaves the maps empty."""
    c = svc
    dp = c.dp("n1")
    fes = (web(c, "deathstar1", "deathstar2", affinity=True),
           ServiceFrontend(VIP, 53, 17, SVC_ID, (backend(c, "deathstar2", 5353),)))
    other = ServiceFrontend("10.96.0.11", 443, 6, SVC_ID + 1, (backend(c, "deathstar1"),))
    assert dp.update_service(SVC_ID, fes) == 2 + 3
    assert dp.update_service(SVC_ID + 1, [other]) == 2
    assert dp.update_service(SVC_ID, fes) == 0
    assert dp.services() == sorted([*fes, other], key=lambda f: (f.service_id, f.port))
    # one backend fewer: the slot goes, the count shrinks; the other service is untouched
    assert dp.update_service(SVC_ID, (web(c, "deathstar1", affinity=True), fes[1])) == 2
    assert dp.remove_service(SVC_ID) == 4
    assert dp.services() == [other]
    assert dp.sync_services([other]) == 0
    assert dp.sync_services([]) == 2
    assert dp.services() == []


def test_removed_backend_is_forgotten_by_live_flows(svc: Cluster) -> None:
    """A UDP flow (same 5-tuple) remembered on a backend that leaves the service chooses
    again at its next packet instead of keeping a backend the service no longer has; an open
    TCP connection keeps its backend (it may be draining)."""
    c = svc
    tie = c.pods["tiefighter"]
    d1, d2 = c.pods["deathstar1"].ip, c.pods["deathstar2"].ip
    put(c, ServiceFrontend(VIP, 53, 17, SVC_ID, (backend(c, "deathstar1", 5353),)),
        ServiceFrontend(VIP, 81, 6, SVC_ID, (backend(c, "deathstar1", 81),)))
    assert udp_names(tie, VIP, 53, 3, source_port=40053) == {"deathstar1": 3}
    assert probe(tie, "tcp", VIP, 81) == "ok"
    put(c, ServiceFrontend(VIP, 53, 17, SVC_ID, (backend(c, "deathstar2", 5353),)),
        ServiceFrontend(VIP, 81, 6, SVC_ID, (backend(c, "deathstar2", 81),)))
    assert udp_names(tie, VIP, 53, 3, source_port=40053) == {"deathstar2": 3}
    remembered = {(e.protocol, e.nat) for e in c.dp("n1").ct()
                  if e.daddr == VIP and e.saddr == tie.ip}
    assert (17, f"{d1}:5353") not in remembered and (17, f"{d2}:5353") in remembered
    assert (6, f"{d1}:81") in remembered  # the closed TCP connection's entry, left to expire


def test_a_tuple_reused_between_clusterip_and_direct_is_a_new_connection(svc: Cluster) -> None:
    """A new connection from the source port of one that just closed, to the same backend,
    once through the ClusterIP and once directly (either order): both complete. Conntrack
    keys both by the translated tuple; a SYN on a closed entry is a new connection, with its
    own translation (before, the second one's replies were translated as the first's)."""
    c = svc
    put(c, web(c, "deathstar2"))
    client, backend_ip = c.pods["tiefighter"], c.pods["deathstar2"].ip
    first = 40000 + secrets.randbelow(10000)
    assert probe(client, "tcp", VIP, 80, source_port=first) == "ok"
    assert probe(client, "tcp", backend_ip, 80, source_port=first) == "ok"
    second = first + 1
    assert probe(client, "tcp", backend_ip, 80, source_port=second) == "ok"
    assert probe(client, "tcp", VIP, 80, source_port=second) == "ok"


def test_a_syn_on_a_closed_clusterip_connection_chooses_its_backend_again(svc: Cluster) -> None:
    """A new connection to the ClusterIP from the source port of one that just closed is
    load-balanced again: after the service's backend changed it goes to the new backend, not
    to the one the closed connection remembered (conntrack keeps that entry for 10 s)."""
    c = svc
    client = c.pods["tiefighter"]
    port = 40000 + secrets.randbelow(10000)
    put(c, web(c, "deathstar1"))
    assert probe(client, "tcp", VIP, 80, source_port=port) == "ok"
    # Now the only backend is a port nothing listens on: the pod answers with a reset.
    put(c, ServiceFrontend(VIP, 80, 6, SVC_ID, (backend(c, "deathstar1", 82),)))
    assert probe(client, "tcp", VIP, 80, source_port=port) == "refused"


@pytest.mark.parametrize("target", ["deathstar1", "deathstar2"], ids=["same-node", "cross-node"])
def test_an_icmp_error_from_a_backend_comes_from_the_clusterip(svc: Cluster, target: str) -> None:
    """A UDP service whose backend has no listener on the target port: the backend's ICMP
    port unreachable is rewritten to be about the client's ClusterIP connection, so the
    client's connected socket gets ECONNREFUSED at once (before: it waited for a timeout)."""
    c = svc
    put(c, ServiceFrontend(VIP, 53, 17, SVC_ID, (backend(c, target, 5399),)))
    assert probe(c.pods["tiefighter"], "udp", VIP, 53, timeout=3.0) == "refused"
    # The error belongs to the connection (conntrack's "related"): policies that allow no
    # ICMP at all (the client's ingress, the backend's egress) let it through.
    tie, dst = c.pods["tiefighter"], c.pods[target]
    c.dp(tie.node).sync_policy(tie.ep_id, [], ingress_enforced=True, egress_enforced=False)
    c.dp(dst.node).sync_policy(dst.ep_id, [], ingress_enforced=False, egress_enforced=True)
    assert probe(tie, "udp", VIP, 53, timeout=3.0) == "refused"


def test_hairpin_a_pod_reaches_itself_through_the_clusterip(svc: Cluster) -> None:
    """A pod calling a service whose chosen backend is the pod itself gets its own answer (TCP
    and UDP). The connection reaches the pod from the service loopback address, as on Cilium
    (a packet from its own address would be refused as martian), and replies come from the
    ClusterIP."""
    c = svc
    ds = c.pods["deathstar1"]
    put(c, web(c, "deathstar1"), ServiceFrontend(VIP, 53, 17, SVC_ID,
                                                 (backend(c, "deathstar1", 5353),)))
    assert many(ds, VIP, 80, 5) == {"deathstar1": 5}
    assert probe(ds, "udp", VIP, 53) == "ok"
    turned = [e for e in c.dp("n1").ct() if e.saddr == "169.254.42.1" and e.daddr == ds.ip]
    assert {e.dport for e in turned} == {80, 5353}
    # Others still reach it as before.
    assert many(c.pods["tiefighter"], VIP, 80, 5) == {"deathstar1": 5}
