"""PolicyService against a real etcd and in-process replicas: storage, validation, overflow,
resolution across replicas, trace, CIDR identities and delivery to a subscribed agent."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from bulkhead.rpcerror import field_violations
from bulkhead.v1 import (
    endpoint_pb2,
    endpoint_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    subscription_pb2,
)
from controlplane.policy import canonical_json, parse_policies
from controlplane.store.cache import Change
from controlplane.store.etcd import KV, Etcd
from controlplane.store.keys import Keys
from controlplane.subscription.waiter import ConvergenceWaiter
from integration.lab.story import POLICY
from nodeagent.datapath.policykeys import decode_key, endpoint_keys
from nodeagent.desired import policy_entries
from nodeagent.subscription.client import SubscriptionClient
from tests.conftest import Replica, ReplicaFactory, eventually

pytestmark = pytest.mark.timeout(60)

NS = "k8s:io.kubernetes.pod.namespace=default"
SEED = POLICY.read_text()  # the seed's rule1, as `make run` applies it
CLUSTERWIDE = """\
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata:
  name: no-world
spec:
  endpointSelector: {}
  egressDeny:
  - toEntities: [world]
"""
CIDR = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: to-cidr
  namespace: default
spec:
  endpointSelector:
    matchLabels:
      class: xwing
  egress:
  - toCIDRSet:
    - cidr: 198.51.100.0/24
      except: [198.51.100.128/25]
"""


def stub(replica: Replica) -> policy_pb2_grpc.PolicyServiceStub:
    return policy_pb2_grpc.PolicyServiceStub(replica.channel())


def ref(namespace: str, name: str) -> policy_pb2.PolicyRef:
    return policy_pb2.PolicyRef(namespace=namespace, name=name)


class Writes:
    """Records every key the replica's cache sees change, except the status keys replicas
    and subscriptions keep writing on their own (the etcd is shared, so its revision moves)."""

    def __init__(self, replica: Replica) -> None:
        self.keys = Keys(replica.cp.config.cluster_name)
        self.seen: list[str] = []
        replica.cp.cache.add_listener(self)

    def reset(self, items: dict[str, KV], revision: int) -> None:
        pass

    def apply(self, revision: int, changes: list[Change]) -> None:
        noise = (f"{self.keys.prefix}replicas/", f"{self.keys.prefix}subscriptions/",
                 f"{self.keys.prefix}subscription-replicas/")
        self.seen += [c.key for c in changes if not c.key.startswith(noise)]

    async def settled(self, replica: Replica) -> list[str]:
        """What was written up to now (after the cache caught up with etcd)."""
        marker = f"{self.keys.prefix}test-marker"
        await replica.cp.cache.wait_for(await replica.cp.etcd.put(marker, b"{}"))
        found, self.seen = [k for k in self.seen if k != marker], []
        return found


async def test_apply_list_get_delete_round_trip(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    policies = stub(replica)
    applied = await policies.Apply(policy_pb2.ApplyPoliciesRequest(yaml=SEED + "---\n" +
                                                                   CLUSTERWIDE))
    assert [(a.policy.kind, a.policy.namespace, a.policy.name, a.action)
            for a in applied.policies] == [
        ("CiliumNetworkPolicy", "default", "rule1", "created"),
        ("CiliumClusterwideNetworkPolicy", "", "no-world", "created")]
    assert {a.policy.revision for a in applied.policies} == {applied.revision}
    listed = await policies.List(policy_pb2.ListPoliciesRequest())
    assert [(p.namespace, p.name, p.rules, p.revision) for p in listed.policies] == [
        ("", "no-world", 1, applied.revision), ("default", "rule1", 1, applied.revision)]
    only = await policies.List(policy_pb2.ListPoliciesRequest(namespace="-"))
    assert [p.name for p in only.policies] == ["no-world"]
    got = await policies.Get(policy_pb2.GetPolicyRequest(policy=ref("default", "rule1")))
    assert "namespace: default" in got.yaml and "class: deathstar" in got.yaml
    assert got.yaml.startswith("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n")
    # The value in etcd is the canonical JSON, readable with etcdctl.
    keys = Keys(replica.cp.config.cluster_name)
    kv = await replica.cp.etcd.get(keys.policy("default", "rule1"))
    assert kv is not None and json.loads(kv.value)["metadata"] == {"name": "rule1",
                                                                   "namespace": "default"}
    assert kv.mod_revision == got.revision
    # Identical content: nothing written, no new revision.
    writes = Writes(replica)
    await writes.settled(replica)  # forget writes made before this point
    again = await policies.Apply(policy_pb2.ApplyPoliciesRequest(yaml=SEED))
    assert [a.action for a in again.policies] == ["unchanged"]
    assert again.revision == applied.revision and not again.affected_identities
    assert await writes.settled(replica) == []
    changed = await policies.Apply(policy_pb2.ApplyPoliciesRequest(
        yaml=SEED.replace('"80"', '"8080"')))
    assert [a.action for a in changed.policies] == ["configured"]
    assert changed.revision > again.revision
    assert await writes.settled(replica) == [keys.policy("default", "rule1")]
    deleted = await policies.Delete(policy_pb2.DeletePolicyRequest(policy=ref("-", "no-world")))
    assert deleted.revision > changed.revision
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await policies.Get(policy_pb2.GetPolicyRequest(policy=ref("", "no-world")))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await policies.Delete(policy_pb2.DeletePolicyRequest(policy=ref("-", "no-world")))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await policies.Get(policy_pb2.GetPolicyRequest(policy=policy_pb2.PolicyRef(
            kind="CiliumClusterwideNetworkPolicy", namespace="default", name="x")))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(err.value)] == ["policy.namespace"]


async def test_one_bad_document_stores_nothing(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    policies = stub(replica)
    bad = CLUSTERWIDE.replace("toEntities: [world]", "toFQDNs: [{matchName: x.com}]")
    writes = Writes(replica)
    await writes.settled(replica)  # forget writes made before this point
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await policies.Apply(policy_pb2.ApplyPoliciesRequest(
            yaml=SEED + "---\n" + bad + "---\n" + SEED.replace("rule1", "rule2").replace(
                '"80"', "70000")))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = [v.field for v in field_violations(err.value)]
    assert fields == ["documents[1].spec.egressDeny[0].toFQDNs",
                      "documents[2].spec.ingress[0].toPorts[0].ports[0].port"]
    assert "documents[1].spec.egressDeny[0].toFQDNs" in (err.value.details() or "")
    assert await writes.settled(replica) == []
    assert not (await policies.List(policy_pb2.ListPoliciesRequest())).policies


async def test_overflow_is_refused_and_nothing_is_stored(replicas: ReplicaFactory) -> None:
    replica = await replicas(policy_map_max=3)
    await identity_pb2_grpc.IdentityServiceStub(replica.channel()).Allocate(
        identity_pb2.AllocateIdentityRequest(labels=["k8s:app=web", NS]))
    ports = "\n".join(f"      - port: \"{p}\"" for p in range(80, 84))
    many = f"""\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: many}}
spec:
  endpointSelector: {{matchLabels: {{app: web}}}}
  ingress:
  - toPorts:
    - ports:
{ports}
"""
    policies = stub(replica)
    writes = Writes(replica)
    await writes.settled(replica)  # forget writes made before this point
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await policies.Apply(policy_pb2.ApplyPoliciesRequest(yaml=SEED + "---\n" + many))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    web = replica.cp.identity_index.by_labels[f"k8s:app=web;{NS}"]
    assert f"identity {web} would have 4 policy entries" in (err.value.details() or "")
    assert await writes.settled(replica) == []
    assert not (await policies.List(policy_pb2.ListPoliciesRequest())).policies


async def make_endpoint(replica: Replica, node: str, name: str, labels: list[str]) -> int:
    made = await endpoint_pb2_grpc.EndpointServiceStub(replica.channel()).Create(
        endpoint_pb2.CreateEndpointRequest(name=name, node=node, labels=labels))
    return int(made.identity)


async def test_resolve_on_two_replicas_and_trace(replicas: ReplicaFactory) -> None:
    a, b = await replicas(), await replicas()
    await node_pb2_grpc.NodeServiceStub(a.channel()).Register(
        node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    deathstar = await make_endpoint(a, "n1", "deathstar", ["k8s:org=empire",
                                                            "k8s:class=deathstar", NS])
    tiefighter = await make_endpoint(a, "n1", "tiefighter", ["k8s:org=empire",
                                                              "k8s:class=tiefighter", NS])
    await make_endpoint(a, "n1", "xwing", ["k8s:org=alliance", "k8s:class=xwing", NS])
    applied = await stub(a).Apply(policy_pb2.ApplyPoliciesRequest(yaml=SEED))
    assert list(applied.affected_identities) == [deathstar]

    async def resolved(replica: Replica) -> policy_pb2.ResolvePolicyResponse:
        return await stub(replica).Resolve(policy_pb2.ResolvePolicyRequest(identity=deathstar))

    mine = await resolved(a)
    assert mine.ingress_enforced and not mine.egress_enforced
    assert [(e.direction, e.peer, e.protocol, e.port_lo, e.port_hi, e.verdict)
            for e in mine.entries] == [("ingress", p, "TCP", 80, 80, "allow")
                                       for p in sorted({deathstar, tiefighter})]
    assert [(o.namespace, o.name, o.rule) for o in mine.entries[0].origins] == [
        ("default", "rule1", "spec.ingress[0]")]
    assert await eventually(lambda: _same(resolved(b), mine))
    # Every replica resolves the same etcd state to the same entries, for every identity.
    for ident in a.cp.identity_index.by_id:
        assert a.cp.policy_resolver.resolved(ident) == b.cp.policy_resolver.resolved(ident)
    assert a.cp.policy_resolver.repository.resolve_all() == \
        a.cp.policy_resolver.repository.full_recompute()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub(a).Resolve(policy_pb2.ResolvePolicyRequest(identity=99999))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    async def verdict(src: str, dst: str, port: int, proto: str = "TCP"
                      ) -> policy_pb2.TracePolicyResponse:
        return await stub(b).Trace(policy_pb2.TracePolicyRequest(
            src_labels=src.split(","), dst_labels=dst.split(","), dport=port, protocol=proto))

    death = f"k8s:org=empire,k8s:class=deathstar,{NS}"
    tie = await verdict(f"k8s:org=empire,k8s:class=tiefighter,{NS}", death, 80)
    assert tie.verdict == "ALLOWED"
    assert (tie.ingress.reason, tie.ingress.decided_by.rule) == ("default/rule1 spec.ingress[0]",
                                                                 "spec.ingress[0]")
    assert (tie.egress.verdict, tie.egress.reason) == ("ALLOWED", "default-allow")
    wrong_port = await verdict(f"k8s:org=empire,k8s:class=tiefighter,{NS}", death, 81, "tcp")
    assert (wrong_port.verdict, wrong_port.ingress.reason) == ("DENIED", "default-deny")
    xwing = await verdict(f"k8s:org=alliance,k8s:class=xwing,{NS}", death, 80)
    assert xwing.verdict == "DENIED" and not xwing.ingress.HasField("decided_by")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await verdict("org=empire", death, 0, "GRE")
    assert [v.field for v in field_violations(err.value)] == ["src_labels[0]", "dport",
                                                              "protocol"]
    # ICMP: the "port" is the ICMP type, 0 (EchoReply) included; no icmps rule allows it here
    echo = await verdict(f"k8s:org=empire,k8s:class=tiefighter,{NS}", death, 0, "ICMP")
    assert (echo.verdict, echo.ingress.reason) == ("DENIED", "default-deny")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await verdict(f"k8s:org=empire,{NS}", death, 256, "icmp")
    assert [v.field for v in field_violations(err.value)] == ["dport"]


async def _same(pending: object, expected: policy_pb2.ResolvePolicyResponse) -> bool:
    """Another replica's view is eventually consistent: NOT_FOUND until its watch caught up."""
    try:
        got = await pending  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return False
    return bool(got.entries == expected.entries
                and got.ingress_enforced == expected.ingress_enforced)


async def test_cidr_identity_allocated_and_released(replicas: ReplicaFactory) -> None:
    replica = await replicas(identity_gc_grace=0.2)
    xwing = (await identity_pb2_grpc.IdentityServiceStub(replica.channel()).Allocate(
        identity_pb2.AllocateIdentityRequest(labels=["k8s:class=xwing", NS]))).id
    await stub(replica).Apply(policy_pb2.ApplyPoliciesRequest(yaml=CIDR))
    index = replica.cp.identity_index
    ids = {p: index.by_labels[f"cidr:{p}"] for p in ("198.51.100.0/24", "198.51.100.128/25")}
    holder = "policy:CiliumNetworkPolicy/default/to-cidr"
    assert all(index.refs[i] == {holder: 1} for i in ids.values())
    entries = (await stub(replica).Resolve(policy_pb2.ResolvePolicyRequest(
        identity=xwing))).entries
    assert [(e.direction, e.peer, e.verdict) for e in entries] == [
        ("egress", ids["198.51.100.0/24"], "allow")]
    # Re-applying keeps one reference each; narrowing the policy drops the except prefix.
    await stub(replica).Apply(policy_pb2.ApplyPoliciesRequest(
        yaml=CIDR.replace("      except: [198.51.100.128/25]\n", "")))
    assert index.refs.get(ids["198.51.100.0/24"]) == {holder: 1}
    assert await eventually(lambda: _true(ids["198.51.100.128/25"] not in index.by_id))
    deleted = await stub(replica).Delete(policy_pb2.DeletePolicyRequest(
        policy=ref("default", "to-cidr")))
    assert list(deleted.released_identities) == [ids["198.51.100.0/24"]]
    assert list(deleted.affected_identities) == [xwing]
    assert await eventually(lambda: _true(not set(ids.values()) & set(index.by_id)))


async def _true(value: bool) -> bool:
    return value


async def test_subscribed_agent_receives_policy_deltas(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    await node_pb2_grpc.NodeServiceStub(replica.channel()).Register(
        node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    deathstar = await make_endpoint(replica, "n1", "deathstar", ["k8s:org=empire",
                                                                  "k8s:class=deathstar", NS])
    client = SubscriptionClient("n1", [replica.address], underlay_ip="192.0.2.1",
                                register=False, backoff=(0.1, 1.0))
    task = asyncio.create_task(client.run())
    try:
        await asyncio.wait_for(client.synced.wait(), 20)
        assert not client.state.policies[deathstar].ingress_enforced
        applied = await stub(replica).Apply(policy_pb2.ApplyPoliciesRequest(yaml=SEED))
        assert await eventually(lambda: _true(client.state.policies[deathstar].ingress_enforced))
        got = client.state.policies[deathstar]
        assert [(e.peer, e.protocol, e.port_lo) for e in got.entries] == [(deathstar, 6, 80)]
        # The wait machinery sees the node ack the change's revision.
        assert replica.cp.subscriptions.state.nodes_hosting({deathstar}) == {"n1"}
        result = await ConvergenceWaiter(replica.cp.subscriptions).wait(
            applied.revision, set(applied.affected_identities), 10.0)
        assert result.converged and result.nodes == ["n1"]
        # A new identity the policy's peer selector matches changes deathstar's entries.
        tie = await make_endpoint(replica, "n1", "tiefighter", ["k8s:org=empire",
                                                                 "k8s:class=tiefighter", NS])
        assert await eventually(lambda: _true(
            {e.peer for e in client.state.policies[deathstar].entries} == {deathstar, tie}))
        await stub(replica).Delete(policy_pb2.DeletePolicyRequest(policy=ref("default",
                                                                             "rule1")))
        assert await eventually(lambda: _true(
            not client.state.policies[deathstar].ingress_enforced))
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_policy_change_reaches_the_subscription_at_the_revision_that_made_it(
        replicas: ReplicaFactory) -> None:
    """The revision pipeline resolves policy before the subscription frames the revision, so
    the node hosting an affected identity gets the new policy in that very revision's delta,
    for a policy write and for an identity that a policy's peer selector matches alike."""
    replica = await replicas()
    await node_pb2_grpc.NodeServiceStub(replica.channel()).Register(
        node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    deathstar = await make_endpoint(replica, "n1", "deathstar", ["k8s:org=empire",
                                                                  "k8s:class=deathstar", NS])
    history = replica.cp.subscriptions.history

    def policies_at(revision: int) -> dict[int, list[int]]:
        """identity -> entry peers, as node n1 received them in the delta of `revision`."""
        deltas = [d for d in history.since(revision - 1) if d.revision == revision]
        body = deltas[0].body_for("n1") if deltas else None
        delta = subscription_pb2.Delta.FromString(body or b"")
        return {c.policy.identity: [e.peer for e in c.policy.entries]
                for c in delta.changes if c.WhichOneof("object") == "policy"}

    applied = await stub(replica).Apply(policy_pb2.ApplyPoliciesRequest(yaml=SEED))
    assert policies_at(applied.revision) == {deathstar: [deathstar]}
    allocated = await identity_pb2_grpc.IdentityServiceStub(replica.channel()).Allocate(
        identity_pb2.AllocateIdentityRequest(labels=["k8s:org=empire", "k8s:class=tie", NS]))
    index = replica.cp.identity_index
    assert await eventually(lambda: _true(allocated.id in index.by_id))
    assert policies_at(index.by_id[allocated.id].mod_revision) == {
        deathstar: sorted([deathstar, allocated.id])}


async def test_policy_stored_around_the_api_waits_for_its_cidr_identity(
        replicas: ReplicaFactory) -> None:
    replica = await replicas()
    keys = Keys(replica.cp.config.cluster_name)
    etcd: Etcd = replica.cp.etcd
    policy = parse_policies(CIDR)[0]
    revision = await etcd.put(keys.policy("default", "to-cidr"), canonical_json(policy).encode())
    await replica.cp.cache.wait_for(revision)
    assert replica.cp.policy_resolver.waits(policy.key)
    # The API's own apply allocates them; the held-back policy then resolves.
    await stub(replica).Apply(policy_pb2.ApplyPoliciesRequest(yaml=CIDR))
    assert await eventually(lambda: _true(not replica.cp.policy_resolver.waits(policy.key)))
    assert replica.cp.policy_resolver.repository.get_policy(policy.key) is not None


ICMP_POLICY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: icmp, namespace: default}
spec:
  endpointSelector: {matchLabels: {class: deathstar}}
  ingress:
  - fromEndpoints: [{matchLabels: {org: empire}}]
    icmps: [{fields: [{type: EchoRequest}]}]
  ingressDeny:
  - icmps: [{fields: [{type: 0, family: IPv4}]}]
"""


async def test_icmp_rule_resolves_and_reaches_the_agent(replicas: ReplicaFactory) -> None:
    """`icmps` through the API: resolved as ICMP entries holding the type, delivered to a
    subscribed agent as protocol 1, and turned into exact policy keys by the agent."""
    replica = await replicas()
    await node_pb2_grpc.NodeServiceStub(replica.channel()).Register(
        node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    deathstar = await make_endpoint(replica, "n1", "deathstar", ["k8s:org=empire",
                                                                  "k8s:class=deathstar", NS])
    client = SubscriptionClient("n1", [replica.address], underlay_ip="192.0.2.1",
                                register=False, backoff=(0.1, 1.0))
    task = asyncio.create_task(client.run())
    try:
        await asyncio.wait_for(client.synced.wait(), 20)
        await stub(replica).Apply(policy_pb2.ApplyPoliciesRequest(yaml=ICMP_POLICY))
        mine = await stub(replica).Resolve(policy_pb2.ResolvePolicyRequest(identity=deathstar))
        assert [(e.direction, e.peer, e.protocol, e.port_lo, e.port_hi, e.verdict)
                for e in mine.entries] == [("ingress", 0, "ICMP", 0, 0, "deny"),
                                           ("ingress", deathstar, "ICMP", 8, 8, "allow")]
        assert await eventually(lambda: _true(client.state.policies[deathstar].ingress_enforced))
        got = client.state.policies[deathstar]
        assert sorted((e.peer, e.protocol, e.port_lo, e.port_hi) for e in got.entries) == [
            (0, 1, 0, 0), (deathstar, 1, 8, 8)]
        keys = [decode_key(k) for k in endpoint_keys(5, policy_entries(got))]
        assert sorted((k.protocol, k.port_lo, k.port_hi, k.deny) for k in keys) == [
            (1, 0, 0, True), (1, 8, 8, False)]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
