"""Stored records have one owner (controlplane/records/): each kind decodes what it encodes,
the cache's check is that decode, docs/etcd-layout.md names every kind and field, and what
agents and the admin API are shown of a record is built once."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bulkhead.v1 import admin_pb2, admin_pb2_grpc, node_pb2, node_pb2_grpc, subscription_pb2_grpc
from bulkhead.v1 import subscription_pb2 as pb
from controlplane.records import codec
from controlplane.records.codec import (
    Endpoint,
    IdentityLabelsRecord,
    IdentityRecord,
    IdentityRefRecord,
    IPCacheEntry,
    JsonRecord,
    LockRecord,
    Node,
    NodeAllocation,
    NodeLabelChanges,
    NodeStatus,
    PresenceRecord,
    Records,
    ServicePortRecord,
    ServiceRecord,
    SubscriptionRecord,
)
from controlplane.store.keys import Keys
from tests.conftest import ReplicaFactory
from tests.test_bad_records import cli_json, put_all

ROOT = Path(__file__).resolve().parent.parent
KEYS = Keys("c")
STATUS = NodeStatus("n1", "r1", "2026-01-01T00:00:00Z", 7, 1, 2, 3, True, 7)
POLICY = (b'{"apiVersion":"cilium.io/v2","kind":"CiliumNetworkPolicy","metadata":'
          b'{"name":"p","namespace":"default"},"spec":{"endpointSelector":{}}}')
NODE = Node("n1", 1, "192.0.2.1", "10.0.1.0/24", "192.0.2.1", 8472, "c", 5, "192.0.2.1:4244")
# One good record of each kind, under its own key.
SAMPLES: dict[str, JsonRecord] = {
    KEYS.identity(70000): IdentityRecord(70000, ("k8s:a=b", "k8s:c=d")),
    KEYS.identity_labels("k8s:a=b;k8s:c=d"): IdentityLabelsRecord(70000),
    KEYS.identity_ref(70000, "endpoint:default/x"): IdentityRefRecord(2),
    KEYS.node("n1"): NODE,
    KEYS.node_allocation("n1"): NodeAllocation(1, "10.0.1.0/24"),
    KEYS.node_labels("n1"): NodeLabelChanges(("ssh=allowed",), ("zone",)),
    KEYS.endpoint("default", "x"): Endpoint("default", "x", "n1", ("k8s:a=b",), "10.0.1.2",
                                            70000),
    KEYS.ipcache_entry("10.0.1.2/32"): IPCacheEntry("10.0.1.2/32", 70000, "n1", "192.0.2.1",
                                                    8472, "c"),
    KEYS.subscription_finals + "n1": dataclasses.replace(STATUS, replica="", connected=False),
    KEYS.subscription_records + "r1": SubscriptionRecord("r1", (STATUS,)),
    KEYS.replica("r1"): PresenceRecord("r1", "127.0.0.1:4240", "1.0", "2026-01-01T00:00:00Z"),
    KEYS.connectivity_lock: LockRecord("alice@ops pid 1", 1_700_000_000_000_000_000, "r1"),
    KEYS.service("default", "deathstar"): ServiceRecord(
        "default", "deathstar", "10.96.0.10", False, 1,
        (ServicePortRecord("http", 80, "TCP", 8080, ""),), ("class=deathstar", "org=empire"),
        ("app.kubernetes.io/name=deathstar",), (), True),
}


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_each_kind_decodes_what_it_encodes_and_the_cache_takes_it(key: str) -> None:
    record = SAMPLES[key]
    records = Records(KEYS.prefix)
    assert records.problem(key, record.encode()) is None
    assert type(record).decode(record.encode()) == record
    assert records.kind(key) is not None


def test_values_keep_their_stored_bytes() -> None:
    """What is already in etcd compares equal to what the codec writes (the allocator's
    transaction compares a label key's value byte for byte)."""
    assert IdentityLabelsRecord(8192).encode() == b'{"id": 8192}'
    assert IdentityRecord(8192, ("k8s:a=b",)).encode() == b'{"id": 8192, "labels": ["k8s:a=b"]}'
    assert IdentityRefRecord(2).encode() == b'{"count": 2}'
    assert IdentityRefRecord.decode(b"{}").count == 1      # written before counts existed
    assert NodeAllocation(1, "10.0.0.0/24").encode() == b'{"node_id": 1, "pod_cidr": "10.0.0.0/24"}'
    assert PresenceRecord("r", "a", "v", "s").encode() == \
        b'{"id": "r", "address": "a", "version": "v", "started": "s"}'
    old_node = {f: v for f, v in dataclasses.asdict(NODE).items()
                if f not in ("agent_address", "labels", "agent_labels")}
    assert Node.of(old_node).agent_address == ""
    assert codec.decode_policy(POLICY).key.name == "p"
    assert codec.encode_policy(codec.decode_policy(POLICY)) == POLICY


@pytest.mark.parametrize(("key", "value", "reason"), [
    (KEYS.node("n1"), b"[]", "not a JSON object (list)"),
    (KEYS.node("n1"), b'{"name": "n1"}', "missing node_id,"),
    (KEYS.subscription_records + "r1", b'{"replica": "r1", "nodes": [{"name": 5}]}',
     "nodes[0]: name is not a string"),
    (KEYS.subscription_finals + "n1", b'{"name": "n2"}', "name 'n2' is not its key's"),
    (KEYS.replica("r1"), b'{"id": "r1"}', "missing address, version, started"),
    (KEYS.policy("default", "q"), POLICY, "metadata is not its key's"),
    (KEYS.service("default", "other"), SAMPLES[KEYS.service("default", "deathstar")].encode(),
     "namespace/name is not its key's"),
    (KEYS.service("default", "deathstar"),
     b'{"namespace": "default", "name": "deathstar", "cluster_ip": "", "headless": false,'
     b' "id": 1, "ports": [{"name": "", "port": "80", "protocol": "TCP"}]}',
     "ports[0]: port is not an integer"),
])
def test_a_value_that_does_not_decode_is_a_bad_record(key: str, value: bytes,
                                                      reason: str) -> None:
    problem = Records(KEYS.prefix).problem(key, value)
    assert problem is not None and problem[1].startswith(reason), problem


def test_the_layout_doc_names_every_kind_and_its_fields() -> None:
    doc = (ROOT / "docs" / "etcd-layout.md").read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([^`]+)` \| (.*)$", doc, re.M)}
    for key, record in SAMPLES.items():
        rest = key[len(KEYS.prefix):]
        row = next((value for pattern, value in rows.items()
                    if rest.startswith(pattern.split("<", 1)[0])
                    and len(pattern.split("<", 1)[0]) > 0), None)
        assert row is not None, f"docs/etcd-layout.md has no row for {rest}"
        for field in dataclasses.fields(record):   # type: ignore[arg-type]
            assert f'"{field.name}"' in row, f"{rest}: {field.name} is not in its row"


def test_only_the_records_module_reads_or_writes_stored_json() -> None:
    """Other JSON in the control plane is not a stored record: the policy engine's canonical
    form (the policy codec's content), the benchmark trace file and the CLI's output."""
    allowed = {"controlplane/records/codec.py", "controlplane/policy/parse.py",
               "controlplane/subscription/trace.py"}
    found = []
    for path in sorted((ROOT / "controlplane").rglob("*.py")):
        name = str(path.relative_to(ROOT))
        if name in allowed or name.startswith("controlplane/cli/"):
            continue
        if re.search(r"\bjson\.(loads?|dumps?)\(", path.read_text()):
            found.append(name)
    assert found == []


async def snapshot(stub: subscription_pb2_grpc.SubscriptionServiceStub,
                   node: str) -> list[pb.Change]:
    async def requests() -> AsyncIterator[pb.AgentMessage]:
        yield pb.AgentMessage(hello=pb.Hello(node=node))
        await asyncio.Event().wait()

    call = stub.Subscribe(requests())
    objects: list[pb.Change] = []
    try:
        async for message in call:
            if message.WhichOneof("msg") == "synced":
                return objects
            if message.WhichOneof("msg") == "snapshot":
                objects.extend(message.snapshot.objects)
    finally:
        call.cancel()
    raise AssertionError("the stream ended before synced")


async def test_agents_and_the_admin_api_see_the_same_node(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    channel = replica.channel()
    await node_pb2_grpc.NodeServiceStub(channel).Register(node_pb2.RegisterNodeRequest(
        name="n1", underlay_ip="192.0.2.1", agent_address="192.0.2.1:4244"))
    # The subscription waits for the replica's cache to hold the node; the list reads it.
    objects = await snapshot(subscription_pb2_grpc.SubscriptionServiceStub(channel), "n1")
    listed = await admin_pb2_grpc.AdminServiceStub(channel).ListNodes(
        admin_pb2.ListNodesRequest())
    sent = [o.node for o in objects if o.WhichOneof("object") == "node"]
    assert sent == list(listed.nodes)
    assert sent[0].agent_address == "192.0.2.1:4244"
    await channel.close()


async def test_corrupt_status_and_presence_records_are_reported_not_used(
        replicas: ReplicaFactory) -> None:
    replica = await replicas()
    keys = replica.cp.keys
    bad = {keys.subscription_finals + "gone": b"not json{",
           keys.subscription_records + "dead": b'{"replica": "dead", "nodes": 3}',
           keys.replica("ghost"): b"[]"}
    await put_all(replica, bad)
    status = await cli_json(replica, "status")
    shown = {b["key"]: b["kind"] for b in status["bad_records"]}  # type: ignore[index]
    assert shown == {keys.subscription_finals + "gone": "subscription_status",
                     keys.subscription_records + "dead": "subscription_replica",
                     keys.replica("ghost"): "replica"}
    assert "ghost" not in status["replicas"]  # type: ignore[index]
    assert await cli_json(replica, "node", "list") == []
