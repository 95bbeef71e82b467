"""Host policies reach the agent through its subscription, like the rest of its state (no
polling): a policy apply or a node label change puts the node's host policy in a delta for
that node only, the reconciler writes it into the host firewall's maps before the revision is
acked (so `policy apply --wait` covers it), and a restarted agent gets it in its first
snapshot. No BPF here: the maps are a stand-in that keeps what they were given
(tests/datapath/test_hostfw.py writes the real ones)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from bulkhead.v1 import (
    endpoint_pb2,
    endpoint_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    nodelabels_pb2,
    nodelabels_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
    types_pb2,
)
from nodeagent.datapath import Direction, PolicyEntry
from nodeagent.datapath.hostfw import HostDesired
from nodeagent.endpoints import EndpointTable
from nodeagent.hostpolicy import REPLIES, TUNNEL, HostPolicyView, exempt_addresses
from nodeagent.reconciler import Reconciler
from nodeagent.subscription.client import SubscriptionClient
from nodeagent.subscription.state import ReceivedState
from nodeagent.worker import Worker
from tests.conftest import Replica, ReplicaFactory, eventually
from tests.test_cli import bulkhead

pytestmark = pytest.mark.timeout(90)

LOCKDOWN = """apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: lockdown}
spec:
  nodeSelector: {}
  ingress:
  - fromNodes: [{matchLabels: {bastion: "true"}}]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
  egress: [{}]
"""


class HostMaps:
    """The datapath as the reconciler sees it, keeping only what the host maps were given."""

    def __init__(self) -> None:
        self.host: list[HostDesired] = []

    def sync_host_policy(self, desired: HostDesired) -> int:
        self.host.append(desired)
        return 1

    def sync_ipcache(self, entries: Iterable[Any]) -> int:
        return 0

    def upsert_ipcache(self, entries: Iterable[Any]) -> int:
        return 0

    def delete_ipcache(self, prefixes: Iterable[str]) -> int:
        return 0

    def sync_services(self, frontends: Iterable[Any]) -> int:
        return 0

    def update_services(self, updates: Iterable[Any], removals: Iterable[int]) -> int:
        return 0

    def sync_policies(self, items: Iterable[Any]) -> tuple[int, list[int]]:
        return 0, []


class Node:
    """One node's agent: subscription client, reconciler, host policy view, recorded maps."""

    def __init__(self, name: str, replica: Replica, tmp: Path) -> None:
        self.maps = HostMaps()
        self.worker = Worker(f"dp-{name}")
        self.state = ReceivedState()
        self.view = HostPolicyView(name, [replica.address])
        self.reconciler = Reconciler(name, self.maps, self.worker,  # type: ignore[arg-type]
                                     self.state, EndpointTable(tmp / f"{name}.json"))
        self.reconciler.host = self.view
        self.client = SubscriptionClient(name, [replica.address], state=self.state,
                                         sink=self.reconciler, register=False,
                                         backoff=(0.1, 1.0), on_applied=self._applied)
        self.host_policies_received: list[str] = []
        """The node named by every host policy this node was sent."""
        self.task: asyncio.Task[None] | None = None

    def _applied(self, revision: int, changes: Sequence[subscription_pb2.Change],
                 at: float) -> None:
        self.host_policies_received += [c.host_policy.node for c in changes
                                         if c.WhichOneof("object") == "host_policy"]

    async def start(self) -> Node:
        await self.view.prepare()
        self.task = asyncio.create_task(self.client.run())
        await asyncio.wait_for(self.client.synced.wait(), 20)
        return self

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.worker.shutdown()


@pytest.fixture
async def started() -> AsyncIterator[list[Node]]:
    nodes: list[Node] = []
    yield nodes
    for node in nodes:
        await node.stop()


async def register(replica: Replica, name: str, ip: str,
                   labels: Sequence[str] = ()) -> types_pb2.Node:
    node: types_pb2.Node = await node_pb2_grpc.NodeServiceStub(replica.channel()).Register(
        node_pb2.RegisterNodeRequest(name=name, underlay_ip=ip, labels=list(labels)))
    return node


async def acked(replica: Replica, node: str, revision: int) -> bool:
    listed = await subscription_pb2_grpc.SubscriptionAdminServiceStub(
        replica.channel()).ListSubscriptions(subscription_pb2.ListSubscriptionsRequest())
    return any(s.name == node and s.acked_revision >= revision for s in listed.subscriptions)


async def test_policy_apply_and_node_labels_reach_the_host_maps_through_the_subscription(
        replicas: ReplicaFactory, tmp_path: Path, started: list[Node]) -> None:
    replica = await replicas()
    n1 = await register(replica, "n1", "192.0.2.1")
    n2 = await register(replica, "n2", "192.0.2.2")
    one = await Node("n1", replica, tmp_path).start()
    two = await Node("n2", replica, tmp_path).start()
    started += [one, two]
    host, _, port = replica.address.rpartition(":")
    # The first snapshot's host maps: nothing enforced, the control plane exempt.
    first = one.maps.host[-1]
    assert (first.ingress_enforced, first.egress_enforced, first.entries) == (False, False, ())
    assert first.exempt == ((host, int(port), "TCP"),)
    assert first.peers == {"192.0.2.1": (1, n1.node_id), "192.0.2.2": (6, n2.node_id)}
    assert one.view.always_allowed() == [f"TCP {host}:{port} (control plane)", TUNNEL,
                                         REPLIES]

    # `policy apply --wait` waits for the nodes the host policy concerns, acked (not covered).
    path = tmp_path / "lockdown.yaml"
    path.write_text(LOCKDOWN)
    rc, out, err = await bulkhead(replica.address, "policy", "apply", "-f", str(path),
                                  "--wait", "--timeout", "20", "-o", "json")
    assert rc == 0, err
    applied = json.loads(out)
    assert 1 in applied["affected_identities"]   # reserved:host: a host policy changed
    assert applied["wait"] == {"converged": True, "nodes": ["n1", "n2"], "pending": [],
                               "covered": []}
    # Acked means written: the maps already hold it when the wait returns.
    lockdown = one.maps.host[-1]
    assert (lockdown.ingress_enforced, lockdown.egress_enforced, lockdown.entries) == (
        True, True, ())
    assert one.view.revision == applied["revision"]
    assert one.state.host_policy is not None and one.state.host_policy.node == "n1"
    assert two.state.host_policy is not None and two.state.host_policy.node == "n2"

    # A node label change: n2 becomes a bastion; n1's maps allow it on port 22.
    writes = len(one.maps.host)
    await nodelabels_pb2_grpc.NodeLabelServiceStub(replica.channel()).Label(
        nodelabels_pb2.LabelNodeRequest(name="n2", add=["bastion=true"]))
    bastion = ((n2.node_id, PolicyEntry(Direction.INGRESS, 6, 6, 22, 22, False)),)

    async def n1_allows_the_bastion() -> bool:
        return len(one.maps.host) > writes and one.maps.host[-1].entries == bastion

    assert await eventually(n1_allows_the_bastion, timeout=20)
    revision = one.view.revision

    async def n1_acked() -> bool:
        return await acked(replica, "n1", revision)

    assert await eventually(n1_acked, timeout=20)
    # n2 got its own: the bastion is itself there (its host, not a remote node).
    async def n2_allows_itself() -> bool:
        got = two.state.host_policy
        return got is not None and [(e.peer, e.peer_node, e.port_lo) for e in got.entries] == [
            (1, "n2", 22)]

    assert await eventually(n2_allows_itself, timeout=20)
    # Each node was sent its own host policy only.
    assert set(one.host_policies_received) == {"n1"}
    assert set(two.host_policies_received) == {"n2"}

    # A restarted agent: the host policy is in its first snapshot's write.
    await one.stop()
    started.remove(one)
    again = await Node("n1", replica, tmp_path).start()
    started.append(again)
    assert again.maps.host[0].ingress_enforced and again.maps.host[0].entries == bastion


def test_exempt_addresses_resolve_names() -> None:
    assert exempt_addresses(["127.0.0.1:9443", "localhost:9444", "[::1]:1"]) == [
        ("127.0.0.1", 9443, "TCP"), ("127.0.0.1", 9444, "TCP")]


FROM_WEB = """apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: from-web}
spec:
  nodeSelector: {}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "2222", protocol: TCP}]}]
"""


async def test_a_new_peer_identity_reaches_the_host_maps(
        replicas: ReplicaFactory, tmp_path: Path, started: list[Node]) -> None:
    """A host rule selecting endpoints follows identities: the first `app=web` endpoint's
    identity appears in the node's host maps without any policy change."""
    replica = await replicas()
    await register(replica, "n1", "192.0.2.1")
    one = await Node("n1", replica, tmp_path).start()
    started.append(one)
    await policy_pb2_grpc.PolicyServiceStub(replica.channel()).Apply(
        policy_pb2.ApplyPoliciesRequest(yaml=FROM_WEB))

    async def enforced_with(entries: tuple[object, ...]) -> bool:
        got = one.maps.host[-1]
        return got.ingress_enforced and got.entries == entries

    assert await eventually(lambda: enforced_with(()), timeout=20)
    made = await endpoint_pb2_grpc.EndpointServiceStub(replica.channel()).Create(
        endpoint_pb2.CreateEndpointRequest(name="web-0", node="n1",
                                           labels=["k8s:app=web", "k8s:io.kubernetes.pod."
                                                   "namespace=default"]))
    web = int(made.identity)
    assert await eventually(lambda: enforced_with(
        ((0, PolicyEntry(Direction.INGRESS, web, 6, 2222, 2222, False)),)), timeout=20)
