"""Services from the received state into a real datapath: the reconciler writes the service
maps from `ReceivedState.services` (snapshot reconciled as a whole, deltas per service, a
restarted agent rewriting only differences), and pods reach the backends through the
ClusterIP.  Two nodes in network namespaces without a control plane (tests/datapath)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from bulkhead.v1 import subscription_pb2 as pb
from bulkhead.v1 import types_pb2
from nodeagent import dumps
from nodeagent.datapath import Backend, Datapath, ServiceFrontend
from nodeagent.endpoints import EndpointTable
from nodeagent.reconciler import Reconciler
from nodeagent.subscription.state import ReceivedState
from nodeagent.worker import Worker
from tests.datapath.conftest import cluster, datapath_env, pin_root  # noqa: F401
from tests.datapath.topology import Cluster, many, probe

pytestmark = pytest.mark.datapath

VIP = "10.96.3.10"
DNS_VIP = "10.96.3.53"


def service(c: Cluster, name: str, sid: int, ip: str, backends: Sequence[str],
            ports: Sequence[types_pb2.ServicePort], **kw: object) -> types_pb2.Service:
    return types_pb2.Service(
        namespace="default", name=name, id=sid, cluster_ip=ip, ports=ports,
        backends=[types_pb2.ServiceBackend(ip=c.pods[b].ip, port=p.target_port,
                                           protocol=p.protocol, port_name=p.name,
                                           node=c.pods[b].node, endpoint=f"default/{b}")
                  for b in backends for p in ports], **kw)  # type: ignore[arg-type]


HTTP = [types_pb2.ServicePort(port=80, protocol="TCP", target_port=80)]
DNS = [types_pb2.ServicePort(name="dns", port=53, protocol="UDP", target_port=5353),
       types_pb2.ServicePort(name="dns-tcp", port=53, protocol="TCP", target_port=81)]


def topology(c: Cluster) -> list[pb.Change]:
    """The nodes and the pods' ipcache entries, as the control plane would send them."""
    nodes = [pb.Change(node=types_pb2.Node(name=n.name, underlay_ip=n.underlay_ip))
             for n in c.nodes.values()]
    return nodes + [pb.Change(ipcache=types_pb2.IPCacheEntry(
        prefix=f"{p.ip}/32", identity=p.identity, node=c.nodes[p.node].name))
        for p in c.pods.values()]


class Agent:
    """The parts of an agent that turn received changes into map writes, for one node."""

    def __init__(self, c: Cluster, node: str, dp: Datapath | None = None,
                 worker: Worker | None = None) -> None:
        self.dp = dp or c.dp(node)
        self.state = ReceivedState()
        self.worker = worker or Worker()
        self.reconciler = Reconciler(c.nodes[node].name, self.dp, self.worker, self.state,
                                     EndpointTable(None))

    async def snapshot(self, revision: int, changes: list[pb.Change]) -> None:
        self.state.begin_snapshot()
        for change in changes:
            self.state.apply(change)
        await self.reconciler.apply(revision, changes)
        removed = self.state.end_snapshot(revision)
        if removed:
            await self.reconciler.apply(revision, removed)
        await self.reconciler.synced(revision)

    async def delta(self, revision: int, changes: list[pb.Change]) -> None:
        for change in changes:
            self.state.apply(change)
        await self.reconciler.apply(revision, changes)

    def lb_writes(self) -> int:
        w = self.dp.map_writes()
        return w["lb_frontends"] + w["lb_backends"]


@pytest.fixture
def agents(cluster: Cluster) -> Iterator[dict[str, Agent]]:  # noqa: F811
    made = {node: Agent(cluster, node) for node in cluster.nodes}
    try:
        yield made
    finally:
        for node, agent in made.items():
            agent.dp.sync_services([])
            agent.dp.sync_ipcache(cluster.node_ipcache(node))
            agent.worker.shutdown()


async def test_services_from_received_state(cluster: Cluster,  # noqa: F811
                                            agents: dict[str, Agent],
                                            pin_root: Path) -> None:  # noqa: F811
    c = cluster
    web = service(c, "deathstar", 21, VIP, ["deathstar1", "deathstar2"], HTTP)
    dns = service(c, "dns", 22, DNS_VIP, ["deathstar2"], DNS)
    headless = service(c, "peers", 23, "", ["deathstar1"], HTTP, headless=True)
    services = [pb.Change(service=s) for s in (web, dns, headless)]
    for agent in agents.values():
        await agent.snapshot(1, topology(c) + services)

    d1, d2 = c.pods["deathstar1"].ip, c.pods["deathstar2"].ip
    n1 = agents["n1"]
    assert n1.dp.services() == [
        ServiceFrontend(VIP, 80, 6, 21, (Backend(d1, 80), Backend(d2, 80))),
        ServiceFrontend(DNS_VIP, 53, 6, 22, (Backend(d2, 81),)),
        ServiceFrontend(DNS_VIP, 53, 17, 22, (Backend(d2, 5353),)),
    ]
    cols, rows, _ = dumps.lb(n1.dp)
    assert rows[0] == {cols[0]: f"{VIP}:80/TCP", cols[1]: "0.0.0.0:0 (21) (0) [ClusterIP]"}
    assert [r[cols[1]] for r in rows[1:3]] == [f"{d1}:80 (21) (1)", f"{d2}:80 (21) (2)"]
    tie, tie2 = c.pods["tiefighter"], c.pods["tiefighter2"]
    assert set(many(tie, VIP, 80, 40)) == {"deathstar1", "deathstar2"}
    assert probe(tie, "udp", DNS_VIP, 53) == "ok"
    assert probe(tie2, "tcp", DNS_VIP, 53) == "ok"

    # a delta re-sends one service whole: only its entries are written
    before = {node: a.lb_writes() for node, a in agents.items()}
    web_one = service(c, "deathstar", 21, VIP, ["deathstar1"], HTTP)
    for agent in agents.values():
        await agent.delta(2, [pb.Change(service=web_one)])
    # deathstar1 keeps slot 0: the frontend's count shrinks and slot 1 goes
    assert {node: a.lb_writes() - before[node] for node, a in agents.items()} == {
        "n1": 2, "n2": 2}
    assert many(tie2, VIP, 80, 20) == {"deathstar1": 20}
    assert n1.dp.services()[1:] == [
        ServiceFrontend(DNS_VIP, 53, 6, 22, (Backend(d2, 81),)),
        ServiceFrontend(DNS_VIP, 53, 17, 22, (Backend(d2, 5353),)),
    ]

    # removed: its frontends and backends go; the ClusterIP is no longer translated
    for agent in agents.values():
        await agent.delta(3, [pb.Change(service_removed="default/dns")])
    assert [f.service_id for f in n1.dp.services()] == [21]
    assert probe(tie, "udp", DNS_VIP, 53) != "ok"

    # a restarted agent adopts the maps: a snapshot with the same services writes nothing,
    # and what it no longer contains is removed
    for agent in agents.values():
        await agent.delta(4, [pb.Change(service=dns)])
    node = c.nodes["n1"]
    worker = Worker()  # pyroute2's sync API must stay off the event loop
    fresh = await worker.run(lambda: Datapath(node.name, netns=node.ns, pin_root=pin_root))
    restarted = Agent(c, "n1", fresh, worker)
    try:
        before_restart = restarted.lb_writes()
        await restarted.snapshot(5, topology(c) + [pb.Change(service=s) for s in (web_one, dns)])
        assert restarted.lb_writes() == before_restart
        await restarted.snapshot(6, [*topology(c), pb.Change(service=web_one)])
        assert [f.service_id for f in restarted.dp.services()] == [21]
        assert restarted.lb_writes() - before_restart == 4  # dns: 2 frontends, 2 backends
        # back to what the first agent's datapath object last wrote (it mirrors the maps)
        await restarted.snapshot(7, topology(c) + [pb.Change(service=s) for s in (web_one, dns)])
        assert restarted.lb_writes() - before_restart == 8
    finally:
        await worker.run(fresh.close)
        worker.shutdown()
