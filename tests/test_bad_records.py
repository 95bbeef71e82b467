"""A record in etcd that does not decode is skipped and named, never fatal: lists, status,
observe and agent subscriptions keep working, and a replica starts with it present."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import urllib.request

import grpc

from bulkhead.v1 import (
    endpoint_pb2,
    endpoint_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
    types_pb2,
)
from controlplane import metrics
from controlplane.server import metrics_sources
from controlplane.store import etcd as ops
from controlplane.store.embedded import free_port
from controlplane.store.keys import Keys
from tests.conftest import Replica, ReplicaFactory
from tests.test_cli import bulkhead

POLICY = """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: rule1}
spec:
  endpointSelector: {matchLabels: {class: deathstar}}
  ingress: [{fromEndpoints: [{matchLabels: {org: empire}}]}]
"""


def corrupt(keys: Keys) -> dict[str, bytes]:
    """Bad values for every kind the cache checks: not JSON, the wrong shape, a wrong key."""
    good_node = {"name": "other", "node_id": 9, "underlay_ip": "192.0.2.9",
                 "pod_cidr": "10.0.9.0/24", "tunnel_ip": "192.0.2.9", "tunnel_port": 8472,
                 "cluster": keys.cluster, "lease": 0}
    return {
        keys.node("corrupt"): b"not json{",
        keys.node("empty"): b"{}",
        keys.node("list"): b"[]",
        keys.node("renamed"): json.dumps(good_node).encode(),   # names another node
        keys.node_allocation("corrupt"): b"\xff\xfe",
        keys.endpoint("default", "bad"): b'{"name": "bad"}',
        keys.ipcache_entry("10.9.9.9/32"): b"[1, 2]",
        keys.identity(99999): b"not json{",
        keys.identity(99998): json.dumps({"id": 99998, "labels": "k8s:a=b"}).encode(),
        keys.identity_ref(99997, "endpoint:default/x"): b'{"count": "many"}',
        keys.policy("default", "bad"): b"{}",
        keys.policy("", "bad-cw"): b"not json{",
        keys.policy("default", "fqdn"): json.dumps({   # well-formed, but not a valid policy
            "apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
            "metadata": {"name": "fqdn", "namespace": "default"},
            "spec": {"endpointSelector": {},
                     "egressDeny": [{"toFQDNs": [{"matchName": "x"}]}]},
        }).encode(),
    }


async def populate(replica: Replica) -> tuple[types_pb2.Node, types_pb2.Endpoint]:
    channel = replica.channel()
    node = await node_pb2_grpc.NodeServiceStub(channel).Register(
        node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    endpoint = await endpoint_pb2_grpc.EndpointServiceStub(channel).Create(
        endpoint_pb2.CreateEndpointRequest(node="n1", namespace="default", name="deathstar",
                                           labels=["k8s:class=deathstar", "k8s:org=empire"]))
    return node, endpoint


async def put_all(replica: Replica, values: dict[str, bytes]) -> None:
    for key, value in values.items():
        await replica.cp.etcd.put(key, value)
    await replica.cp.cache.wait_for((await replica.cp.etcd.status()).revision)


async def cli_json(replica: Replica, *args: str) -> object:
    rc, out, err = await bulkhead(replica.address, *args, "-o", "json")
    assert rc == 0, err
    return json.loads(out)


async def check_views(replica: Replica, bad: dict[str, bytes], endpoint: types_pb2.Endpoint,
                      tmp_policy: str) -> None:
    nodes = await cli_json(replica, "node", "list")
    assert [n["name"] for n in nodes] == ["n1"]  # type: ignore[attr-defined]
    endpoints = await cli_json(replica, "endpoint", "list")
    assert [e["name"] for e in endpoints] == ["deathstar"]  # type: ignore[attr-defined]
    ipcache = await cli_json(replica, "ipcache", "list")
    assert [e["prefix"] for e in ipcache] == [f"{endpoint.ip}/32"]  # type: ignore[attr-defined]
    identities = await cli_json(replica, "identity", "list")
    assert endpoint.identity in [i["id"] for i in identities]  # type: ignore[attr-defined]
    assert not {99998, 99999} & {i["id"] for i in identities}  # type: ignore[attr-defined]
    policies = await cli_json(replica, "policy", "list")
    assert "rule1" in json.dumps(policies) and "bad" not in json.dumps(policies)
    status = await cli_json(replica, "status")
    shown = {b["key"]: b for b in status["bad_records"]}  # type: ignore[index]
    assert set(shown) == set(bad)
    assert "not JSON" in shown[replica.cp.keys.node("corrupt")]["reason"]
    assert shown[replica.cp.keys.node("corrupt")]["kind"] == "node"
    assert shown[replica.cp.keys.node("renamed")]["reason"].startswith("name 'other'")
    assert "only egress allow rules can have toFQDNs" in shown[
        replica.cp.keys.policy("default", "fqdn")]["reason"]
    assert status["counts"]["nodes"] == 1  # type: ignore[index]
    rc, out, err = await bulkhead(replica.address, "status")
    assert rc == 0, err
    assert f"Bad records:     {len(bad)} skipped" in out
    assert status["counts"]["bad_records"] == len(bad)  # type: ignore[index]
    assert replica.cp.keys.endpoint("default", "bad") in out
    rc, _, err = await bulkhead(replica.address, "observe", "--last", "5")
    assert rc == 0, err
    rc, _, err = await bulkhead(replica.address, "policy", "apply", "-f", tmp_policy)
    assert rc == 0, err


async def test_corrupt_records_are_skipped_named_and_forgotten_once_fixed(
        replicas: ReplicaFactory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    replica = await replicas()
    _node, endpoint = await populate(replica)
    policy = tmp_path / "rule1.yaml"
    policy.write_text(POLICY)
    rc, _, err = await bulkhead(replica.address, "policy", "apply", "-f", str(policy))
    assert rc == 0, err
    bad = corrupt(replica.cp.keys)
    await put_all(replica, bad)
    await check_views(replica, bad, endpoint, str(policy))
    # The next free address's ipcache key holds garbage: that address is not handed out.
    taken = str(ipaddress.IPv4Address(endpoint.ip) + 1)
    bad[replica.cp.keys.ipcache_entry(f"{taken}/32")] = b"{}"
    await put_all(replica, bad)
    another = await endpoint_pb2_grpc.EndpointServiceStub(replica.channel()).Create(
        endpoint_pb2.CreateEndpointRequest(node="n1", namespace="default", name="xwing",
                                           labels=["k8s:class=xwing"]))
    assert another.ip != taken

    # Fixed or deleted, a key leaves the list; a fixed node appears.
    keys = replica.cp.keys
    fixed = {"name": "corrupt", "node_id": 77, "underlay_ip": "192.0.2.77",
             "pod_cidr": "10.0.77.0/24", "tunnel_ip": "192.0.2.77", "tunnel_port": 8472,
             "cluster": keys.cluster, "lease": 0}
    await replica.cp.etcd.put(keys.node("corrupt"), json.dumps(fixed).encode())
    policy.write_text(POLICY.replace("name: rule1", "name: bad"))   # applying rewrites it
    rc, _, err = await bulkhead(replica.address, "policy", "apply", "-f", str(policy))
    assert rc == 0, err
    for key in bad:
        if key not in (keys.node("corrupt"), keys.policy("default", "bad")):
            await replica.cp.etcd.txn([], [ops.delete(key)])
    await replica.cp.cache.wait_for((await replica.cp.etcd.status()).revision)
    status = await cli_json(replica, "status")
    assert status["bad_records"] == []  # type: ignore[index]
    nodes = await cli_json(replica, "node", "list")
    assert [n["name"] for n in nodes] == ["corrupt", "n1"]  # type: ignore[attr-defined]


async def test_good_record_overwritten_with_garbage_leaves_views_and_is_counted(
        replicas: ReplicaFactory) -> None:
    replica = await replicas()
    await populate(replica)
    key = replica.cp.keys.endpoint("default", "deathstar")
    await put_all(replica, {key: b"not json{"})
    assert await cli_json(replica, "endpoint", "list") == []
    status = await cli_json(replica, "status")
    assert [b["key"] for b in status["bad_records"]] == [key]  # type: ignore[index]
    port = free_port()
    server = metrics.serve(metrics_sources(replica.cp), f"127.0.0.1:{port}")
    try:
        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return str(r.read().decode())

        assert 'bulkhead_bad_records{kind="endpoint"} 1.0' in await asyncio.to_thread(scrape)
    finally:
        server.shutdown()


async def test_fresh_replica_starts_with_corrupt_records_present(
        replicas: ReplicaFactory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = await replicas()
    _node, endpoint = await populate(first)
    policy = tmp_path / "rule1.yaml"
    policy.write_text(POLICY)
    rc, _, err = await bulkhead(first.address, "policy", "apply", "-f", str(policy))
    assert rc == 0, err
    bad = corrupt(first.cp.keys)
    await put_all(first, bad)
    second = await replicas()
    await check_views(second, bad, endpoint, str(policy))


async def test_agent_snapshot_and_deltas_skip_corrupt_records(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    node, endpoint = await populate(replica)
    keys = replica.cp.keys
    await put_all(replica, corrupt(keys))
    channel = replica.channel()
    outbox: asyncio.Queue[subscription_pb2.AgentMessage] = asyncio.Queue()
    outbox.put_nowait(subscription_pb2.AgentMessage(hello=subscription_pb2.Hello(node="n1")))

    async def requests():  # type: ignore[no-untyped-def]
        while True:
            yield await outbox.get()

    call = subscription_pb2_grpc.SubscriptionServiceStub(channel).Subscribe(requests())
    stream = call.__aiter__()
    objects: list[subscription_pb2.Change] = []
    try:
        while (message := await stream.__anext__()).WhichOneof("msg") != "synced":
            kind = message.WhichOneof("msg")
            if kind == "snapshot":
                objects.extend(message.snapshot.objects)
            else:
                assert kind == "welcome", message
        nodes = [o.node.name for o in objects if o.WhichOneof("object") == "node"]
        ipcache = [o.ipcache.prefix for o in objects if o.WhichOneof("object") == "ipcache"]
        identities = {o.identity.id for o in objects if o.WhichOneof("object") == "identity"}
        policies = [o.policy.identity for o in objects if o.WhichOneof("object") == "policy"]
        assert nodes == [node.name]
        assert ipcache == [f"{endpoint.ip}/32"]
        assert endpoint.identity in identities and not {99998, 99999} & identities
        assert policies == [endpoint.identity]

        # Live: garbage over the endpoint's ipcache entry removes it, a new garbage key is
        # not sent, and what follows still arrives.
        await replica.cp.etcd.put(keys.ipcache_entry(f"{endpoint.ip}/32"), b"not json{")
        await replica.cp.etcd.put(keys.ipcache_entry("10.0.0.200/32"), b"{}")
        await node_pb2_grpc.NodeServiceStub(channel).Register(
            node_pb2.RegisterNodeRequest(name="n2", underlay_ip="192.0.2.2"))
        changes: list[subscription_pb2.Change] = []
        while not any(c.node.name == "n2" for c in changes):
            message = await stream.__anext__()
            if message.WhichOneof("msg") == "deltas":
                changes += [c for d in message.deltas.deltas for c in d.changes]
        assert [c.ipcache_removed for c in changes
                if c.WhichOneof("object") == "ipcache_removed"] == [f"{endpoint.ip}/32"]
        assert not [c for c in changes if c.WhichOneof("object") == "ipcache"]
    finally:
        call.cancel()
    await channel.close()


def test_every_checked_kind_has_a_table_row() -> None:
    from controlplane.records.codec import Records

    keys = Keys("c")
    records = Records(keys.prefix)
    assert records.kind(keys.node("a")) == "node"
    assert records.kind(keys.node_allocation("a")) == "node_allocation"
    assert records.kind(keys.identity_ref(5, "h")) == "identity_ref"
    assert records.kind(keys.node_id(3)) is None    # a plain node name, not JSON
    assert records.problem(keys.node_id(3), b"n1") is None


async def rpc_error(call: object) -> grpc.aio.AioRpcError:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc
    raise AssertionError("the call succeeded")


async def test_api_reading_a_corrupt_record_names_it_and_rewrites_or_deletes_it(
        replicas: ReplicaFactory) -> None:
    replica = await replicas()
    node, _endpoint = await populate(replica)
    keys = replica.cp.keys
    nodes = node_pb2_grpc.NodeServiceStub(replica.channel())
    endpoints = endpoint_pb2_grpc.EndpointServiceStub(replica.channel())
    await put_all(replica, {keys.node("n1"): b"not json{",
                            keys.endpoint("default", "deathstar"): b"[]"})

    # A node whose record is garbage is told to register again, and registering heals it.
    err = await rpc_error(nodes.Heartbeat(node_pb2.HeartbeatRequest(name="n1")))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert keys.node("n1") in (err.details() or "") and "register" in (err.details() or "")
    again = await nodes.Register(node_pb2.RegisterNodeRequest(name="n1",
                                                              underlay_ip="192.0.2.1"))
    assert (again.node_id, again.pod_cidr) == (node.node_id, node.pod_cidr)

    # An endpoint whose record is garbage is named by get and create; delete removes it.
    err = await rpc_error(endpoints.Get(endpoint_pb2.GetEndpointRequest(
        namespace="default", name="deathstar")))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert keys.endpoint("default", "deathstar") in (err.details() or "")
    err = await rpc_error(endpoints.Create(endpoint_pb2.CreateEndpointRequest(
        node="n1", namespace="default", name="deathstar", labels=["k8s:class=deathstar"])))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    await endpoints.Delete(endpoint_pb2.DeleteEndpointRequest(namespace="default",
                                                              name="deathstar"))

    # A node whose allocation is garbage is named; deregistering clears it.
    await put_all(replica, {keys.node_allocation("n1"): b"{}"})
    err = await rpc_error(nodes.Register(node_pb2.RegisterNodeRequest(
        name="n1", underlay_ip="192.0.2.1")))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert keys.node_allocation("n1") in (err.details() or "")
    await nodes.Deregister(node_pb2.DeregisterNodeRequest(name="n1"))
    await nodes.Register(node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))

    await replica.cp.cache.wait_for((await replica.cp.etcd.status()).revision)
    status = await cli_json(replica, "status")
    assert status["bad_records"] == []  # type: ignore[index]
    assert [n["name"] for n in await cli_json(replica, "node", "list")] == ["n1"]  # type: ignore[attr-defined]


async def test_allocating_over_a_corrupt_label_index_names_the_key(
        replicas: ReplicaFactory) -> None:
    """The allocator reads the label index and references straight from etcd: one that does
    not decode is named (FAILED_PRECONDITION), never INTERNAL, and a correct value heals it."""
    replica = await replicas()
    identities = identity_pb2_grpc.IdentityServiceStub(replica.channel())
    labels = ["k8s:app=corrupt", "k8s:io.kubernetes.pod.namespace=default"]
    key = replica.cp.keys.identity_labels(replica.cp.allocator.canonical(labels).key)
    await put_all(replica, {key: b"not json{"})
    err = await rpc_error(identities.Allocate(identity_pb2.AllocateIdentityRequest(labels=labels)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert key in (err.details() or "")

    await replica.cp.etcd.txn([], [ops.delete(key)])
    allocated = await identities.Allocate(identity_pb2.AllocateIdentityRequest(labels=labels))
    ref = replica.cp.allocator.reference_key(allocated.id, "admin")
    await put_all(replica, {ref: b"[]"})
    err = await rpc_error(identities.Release(identity_pb2.ReleaseIdentityRequest(id=allocated.id,
                                                                        holder="admin")))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert ref in (err.details() or "")
