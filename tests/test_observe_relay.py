"""The flow relay's own bookkeeping, without agents: how often it lists nodes and rebuilds its
IP -> endpoint map (the flows themselves are tested in the lab)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any, cast

from bulkhead import flowfilter
from bulkhead.v1 import flow_pb2
from controlplane.endpoints.registry import EndpointRegistry
from controlplane.identity.index import IdentityIndex
from controlplane.nodes.registry import NodeRegistry
from controlplane.observe.enrich import FlowEnricher
from controlplane.observe.relay import FlowRelay
from controlplane.records.codec import Endpoint, Node
from controlplane.store.cache import Change
from controlplane.store.etcd import KV
from controlplane.store.keys import Keys

KEYS = Keys("t")
NODE = Node("n1", 1, "192.168.0.1", "10.0.1.0/24", "192.168.0.1", 8472, "t", 1,
            "127.0.0.1:1")


class FakeEndpoints:
    keys = KEYS

    def __init__(self) -> None:
        self.items = [Endpoint("default", "xwing", "n1", ("k8s:a=b",), "10.0.1.5", 300)]
        self.listed = 0

    def endpoints(self) -> list[Endpoint]:
        self.listed += 1
        return list(self.items)


class FakeNodes:
    def __init__(self) -> None:
        self.listed = 0

    def nodes(self) -> list[Node]:
        self.listed += 1
        return [NODE]

    def cached(self, name: str) -> Node | None:
        return NODE


def enricher(endpoints: FakeEndpoints) -> FlowEnricher:
    return FlowEnricher(cast(EndpointRegistry, endpoints), IdentityIndex(KEYS))


def flow_to(ip: str) -> flow_pb2.Flow:
    return flow_pb2.Flow(destination=flow_pb2.FlowPeer(ip=ip, identity=2))


def change(key: str) -> Change:
    return Change("put", key, KV(key, b"{}", 2, 2, 1, 0), None)


def test_enricher_rebuilds_its_ip_map_only_after_endpoint_changes() -> None:
    endpoints = FakeEndpoints()
    e = enricher(endpoints)
    e.reset({}, 1)
    assert e.enrich(flow_to("10.0.1.5")).destination.pod == "xwing"
    assert e.enrich(flow_to("10.0.1.5")).destination.labels == ["reserved:world"]
    assert endpoints.listed == 1
    for revision in range(2, 20):          # e.g. the status record, every second
        e.apply(revision, [change(f"{KEYS.prefix}subscription-replicas/r1")])
        e.enrich(flow_to("10.0.1.5"))
    assert endpoints.listed == 1
    endpoints.items.append(Endpoint("default", "tie", "n1", ("k8s:a=c",), "10.0.1.6", 301))
    e.apply(20, [change(KEYS.endpoint("default", "tie"))])
    assert e.enrich(flow_to("10.0.1.6")).destination.pod == "tie"
    assert endpoints.listed == 2
    e.reset({}, 30)                         # a relist may change anything
    e.enrich(flow_to("10.0.1.6"))
    assert endpoints.listed == 3


class BusyRelay(FlowRelay):
    """Each node's follower hands over a burst of flows at once."""

    async def _follow_node(self, node: Node, f: flow_pb2.FlowFilter,
                           queue: asyncio.Queue[flow_pb2.Flow]) -> None:
        for i in range(500):
            await queue.put(flow_pb2.Flow(node=node.name, sequence=i))
        await asyncio.Event().wait()


async def test_follow_lists_nodes_per_poll_not_per_flow() -> None:
    nodes = FakeNodes()
    relay = BusyRelay(cast(NodeRegistry, nodes), enricher(FakeEndpoints()))
    stream = cast(AsyncGenerator[flow_pb2.Flow, None],
                  relay.follow(flow_pb2.GetFlowsRequest(follow=True)))
    got: list[Any] = []
    try:
        async for flow in stream:
            got.append(flow.sequence)
            if len(got) == 500:
                break
    finally:
        await stream.aclose()
    assert got == list(range(500))
    assert nodes.listed <= 2


def test_the_service_filter_is_left_to_the_agents() -> None:
    """Agents name the service a flow was sent to, so they filter on it themselves: the
    relay passes `to_service` on and asks only for the newest N (labels and pods it strips,
    asking for everything, as only it can fill those in)."""
    f = flow_pb2.FlowFilter(to_service="default/deathstar", to_pod="deathstar-1")
    narrowed = FlowRelay._agent_filter(f)
    assert (narrowed.to_service, narrowed.to_pod) == ("default/deathstar", "")
    assert not flowfilter.needs_enrichment(flow_pb2.FlowFilter(to_service="default/deathstar"))
