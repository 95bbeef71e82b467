"""Policy interest: a node receives an identity's resolved policy only while it hosts an
endpoint of that identity. Writes go through a real replica process; the subscriptions come
from an in-process fan-out with a label-driven policy source on the same etcd."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Set

import grpc
import pytest

from bulkhead.v1 import subscription_pb2_grpc
from controlplane.api.subscription_service import SubscriptionAdminService, SubscriptionService
from controlplane.identity.index import IdentityIndex
from controlplane.pipeline import RevisionPipeline
from controlplane.store.cache import Change, ClusterCache
from controlplane.store.etcd import KV
from controlplane.store.keys import Keys
from controlplane.subscription.content import PolicyEntryView, ResolvedView
from controlplane.subscription.fanout import Fanout

from .cluster import Cluster
from .conftest import Agent, eventually

pytestmark = pytest.mark.timeout(120)
WEB = PolicyEntryView("ingress", 0, 6, 80, 80, "allow")


class LabelPolicy:
    """Identities labelled k8s:role=web allow tcp/80 in; others are unrestricted. The policy
    stage of the revision pipeline in place of the resolver."""

    def __init__(self, keys: Keys) -> None:
        self.prefix = keys.identity_ids
        self.web: set[int] = set()

    def reset(self, items: dict[str, KV], revision: int) -> None:
        self.web = {int(json.loads(kv.value)["id"]) for key, kv in items.items()
                    if key.startswith(self.prefix) and "k8s:role=web" in kv.value.decode()}

    def apply(self, revision: int, changes: list[Change],
              services_changed: Set[str] = frozenset()) -> Set[int]:
        changed = set()
        for change in changes:
            if not change.key.startswith(self.prefix):
                continue
            ident = int(change.key[len(self.prefix):])
            changed.add(ident)
            if change.kv is not None and b"k8s:role=web" in change.kv.value:
                self.web.add(ident)
            else:
                self.web.discard(ident)
        return changed

    def entries_for(self, identity: int) -> ResolvedView:
        if identity in self.web:
            return ResolvedView(True, False, (WEB,))
        return ResolvedView(False, False, ())


@pytest.fixture
async def fanout_server(cluster: Cluster) -> AsyncIterator[tuple[str, Fanout]]:
    assert cluster.etcd is not None
    keys = Keys(cluster.cluster_name)
    cache = ClusterCache(cluster.etcd, keys.prefix)
    policy = LabelPolicy(keys)
    fanout = Fanout(cluster.etcd, keys, cache, policy, f"inproc-{cluster.tag}")
    cache.add_listener(RevisionPipeline(IdentityIndex(keys), policy, fanout.state))
    await cache.start()
    await fanout.start()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers([SubscriptionService(fanout).handler()])
    subscription_pb2_grpc.add_SubscriptionAdminServiceServicer_to_server(
        SubscriptionAdminService(fanout), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", fanout
    finally:
        await server.stop(0)
        await fanout.stop()
        await cache.stop()


def policies_seen(agent: Agent) -> set[int]:
    seen = set(agent.client.state.policies)
    for _, changes in agent.deltas:
        for change in changes:
            if change.WhichOneof("object") == "policy":
                seen.add(change.policy.identity)
    return seen


async def test_policy_only_for_identities_hosted_on_the_node(
        cluster: Cluster, agents: list[Agent], fanout_server: tuple[str, Fanout]) -> None:
    address, fanout = fanout_server
    a = await cluster.start_replica("a")
    for i, node in enumerate(("n1", "n2", "n3")):
        await cluster.register(a.address, node, f"192.168.20.{i + 1}")
    web = await cluster.create_endpoint(a.address, "n1", "web-1", ["k8s:role=web"])
    db = await cluster.create_endpoint(a.address, "n2", "db-1", ["k8s:role=db"])
    n1, n2, n3 = [await Agent(n, [address], "", register=False).start() for n in ("n1", "n2", "n3")]
    agents.extend([n1, n2, n3])
    assert set(n1.client.state.policies) == {web.identity}
    entry = n1.client.state.policies[web.identity]
    assert entry.ingress_enforced and [(e.protocol, e.port_lo) for e in entry.entries] == [(6, 80)]
    assert set(n2.client.state.policies) == {db.identity}
    # A web endpoint lands on n2: n2 gets web's policy; when it leaves, its removal.
    web2 = await cluster.create_endpoint(a.address, "n2", "web-2", ["k8s:role=web"])
    assert web2.identity == web.identity
    await eventually(lambda: web.identity in n2.client.state.policies)
    waited = await SubscriptionAdminService(fanout).waiter.wait(
        await cluster.revision(), {web.identity}, 30.0)
    assert waited.converged and waited.nodes == ["n1", "n2"]
    await cluster.delete_endpoint(a.address, "web-2")
    await eventually(lambda: web.identity not in n2.client.state.policies)
    removal = [c for _, cs in n2.deltas for c in cs
               if c.WhichOneof("object") == "policy_removed"]
    assert [c.policy_removed for c in removal] == [web.identity]
    # n3 hosts nothing: it has every identity, and never any policy.
    await eventually(lambda: web.identity in n3.client.state.identities
                     and db.identity in n3.client.state.identities)
    assert policies_seen(n3) == set()
    assert db.identity not in policies_seen(n1)
