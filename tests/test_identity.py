"""Identity allocation against a real etcd, through the gRPC API where users see it."""

from __future__ import annotations

import asyncio
import random

import grpc
import pytest

from bulkhead.rpcerror import field_violations
from bulkhead.v1 import identity_pb2, identity_pb2_grpc
from controlplane.identity.allocator import IdentityRange
from controlplane.store import etcd as ops
from controlplane.store.keys import Keys
from tests.conftest import ReplicaFactory, eventually


def label_sets(count: int) -> list[list[str]]:
    return [[f"k8s:app=app{i}", f"k8s:tier=t{i % 7}", "k8s:io.kubernetes.pod.namespace=default"]
            for i in range(count)]


async def test_two_replicas_agree_under_concurrency(replicas: ReplicaFactory) -> None:
    a, b = await replicas(), await replicas()
    sets = label_sets(1000)
    stubs = [identity_pb2_grpc.IdentityServiceStub(r.channel()) for r in (a, b)]
    results: dict[int, set[int]] = {i: set() for i in range(len(sets))}
    queue: asyncio.Queue[int] = asyncio.Queue()
    # Every set is requested twice, once per replica, in shuffled order: maximal overlap.
    order = [i for i in range(len(sets))] * 2
    random.shuffle(order)
    for i in order:
        queue.put_nowait(i)

    async def client(n: int) -> None:
        stub = stubs[n % 2]
        while not queue.empty():
            i = queue.get_nowait()
            ident = await stub.Allocate(identity_pb2.AllocateIdentityRequest(labels=sets[i]))
            results[i].add(ident.id)

    await asyncio.gather(*(client(n) for n in range(40)))  # 2 replicas x 20 clients
    assert all(len(ids) == 1 for ids in results.values()), "a label set got two ids"
    ids = [next(iter(v)) for v in results.values()]
    assert len(set(ids)) == len(sets), "two label sets share an id"
    assert all(i in IdentityRange.for_cluster(0) for i in ids)
    # Lookups through either replica return the same mapping.
    await a.cp.cache.wait_for((await a.cp.etcd.status()).revision)
    await b.cp.cache.wait_for((await b.cp.etcd.status()).revision)
    for i in random.sample(range(len(sets)), 50):
        for stub in stubs:
            found = await stub.Lookup(identity_pb2.LookupIdentityRequest(labels=sets[i]))
            assert found.id == ids[i]


async def test_mapping_survives_restart_of_replicas_and_etcd(replicas: ReplicaFactory,
                                                             etcd, cluster_name) -> None:  # type: ignore[no-untyped-def]
    first = await replicas()
    stub = identity_pb2_grpc.IdentityServiceStub(first.channel())
    sets = label_sets(50)
    before = [(await stub.Allocate(identity_pb2.AllocateIdentityRequest(labels=s))).id
              for s in sets]
    await first.stop()
    etcd.stop()
    etcd.start()
    second = await replicas()
    stub = identity_pb2_grpc.IdentityServiceStub(second.channel())
    after = [(await stub.Allocate(identity_pb2.AllocateIdentityRequest(labels=s))).id
             for s in sets]
    assert after == before


async def test_cluster_id_selects_the_range(replicas: ReplicaFactory) -> None:
    replica = await replicas(cluster_id=3)
    stub = identity_pb2_grpc.IdentityServiceStub(replica.channel())
    ident = await stub.Allocate(identity_pb2.AllocateIdentityRequest(labels=["k8s:a=b"]))
    assert 3 << 16 <= ident.id <= (3 << 16) | 0xFFFF


async def test_reserved_identities_are_fixed(replicas: ReplicaFactory) -> None:
    stub = identity_pb2_grpc.IdentityServiceStub((await replicas()).channel())
    ident = await stub.Allocate(identity_pb2.AllocateIdentityRequest(labels=["reserved:world"]))
    assert ident.id == 2
    got = await stub.Get(identity_pb2.GetIdentityRequest(id=6))
    assert list(got.labels) == ["reserved:remote-node"]


async def test_full_range_is_resource_exhausted(replicas: ReplicaFactory) -> None:
    replica = await replicas(identity_range=(300, 302))
    stub = identity_pb2_grpc.IdentityServiceStub(replica.channel())
    for i in range(3):
        await stub.Allocate(identity_pb2.AllocateIdentityRequest(labels=[f"k8s:n={i}"]))
        await replica.cp.cache.wait_for((await replica.cp.etcd.status()).revision)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Allocate(identity_pb2.AllocateIdentityRequest(labels=["k8s:n=4"]))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # A known label set still resolves while the range is full.
    again = await stub.Allocate(identity_pb2.AllocateIdentityRequest(labels=["k8s:n=0"]))
    assert 300 <= again.id <= 302


async def test_churn_leaks_nothing_and_collects_nothing_referenced(
        replicas: ReplicaFactory) -> None:
    replica = await replicas(identity_gc_grace=1.0)
    stub = identity_pb2_grpc.IdentityServiceStub(replica.channel())
    keep = await stub.Allocate(identity_pb2.AllocateIdentityRequest(labels=["k8s:keep=yes"]))
    sem = asyncio.Semaphore(20)

    async def churn(i: int) -> None:
        async with sem:
            labels = [f"k8s:churn=c{i % 500}"]
            ident = await stub.Allocate(identity_pb2.AllocateIdentityRequest(labels=labels,
                                                                             holder=f"h{i}"))
            await stub.Release(identity_pb2.ReleaseIdentityRequest(id=ident.id, holder=f"h{i}"))

    await asyncio.gather(*(churn(i) for i in range(5000)))
    cp = replica.cp
    keys = Keys(cp.config.cluster_name)

    async def only_referenced_left() -> bool:
        kvs, _, _ = await cp.etcd.range(keys.identity_ids)
        return len(kvs) == 1

    assert await eventually(only_referenced_left, timeout=20)
    kvs, _, _ = await cp.etcd.range(keys.identity_labels_prefix)
    assert len(kvs) == 1, "a label index key leaked"
    still = await stub.Get(identity_pb2.GetIdentityRequest(id=keep.id))
    assert list(still.labels) == ["k8s:keep=yes"]


async def test_an_identity_collected_behind_a_lagging_cache_is_allocated_afresh(
        replicas: ReplicaFactory) -> None:
    """The replica's cache trails etcd; while it still lists an identity the collector has
    removed, allocating those labels must create a new one, not spin until ABORTED (the churn
    test above hit that under load)."""
    replica = await replicas()
    cp = replica.cp
    stub = identity_pb2_grpc.IdentityServiceStub(replica.channel())
    gone = await stub.Allocate(identity_pb2.AllocateIdentityRequest(labels=["k8s:lag=1"]))
    keys = Keys(cp.config.cluster_name)
    label_key = ";".join(gone.labels)
    collected = await cp.etcd.txn([], [ops.delete(keys.identity_ref(gone.id, "admin")),
                                       ops.delete(keys.identity(gone.id)),
                                       ops.delete(keys.identity_labels(label_key))])
    assert collected.succeeded
    await cp.cache.wait_for((await cp.etcd.status()).revision)
    # The watch has caught up; put the collected identity back into the index, as a cache that
    # has not yet seen the collection holds it.
    cp.identity_index.by_labels[label_key] = gone.id
    again = await stub.Allocate(identity_pb2.AllocateIdentityRequest(labels=["k8s:lag=1"]))
    kv = await cp.etcd.get(keys.identity(again.id))
    assert kv is not None, "the answered identity is not stored"
    assert list(again.labels) == ["k8s:lag=1"]


async def test_release_of_unknown_reference_is_not_found(replicas: ReplicaFactory) -> None:
    stub = identity_pb2_grpc.IdentityServiceStub((await replicas()).channel())
    ident = await stub.Allocate(identity_pb2.AllocateIdentityRequest(labels=["k8s:r=1"]))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Release(identity_pb2.ReleaseIdentityRequest(id=ident.id, holder="someone"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_bad_labels_name_the_field(replicas: ReplicaFactory) -> None:
    stub = identity_pb2_grpc.IdentityServiceStub((await replicas()).channel())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Allocate(identity_pb2.AllocateIdentityRequest(labels=["k8s:ok=1", "bad"]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(err.value)] == ["labels[1]"]


async def test_lookup_many_answers_in_request_order(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    stub = identity_pb2_grpc.IdentityServiceStub(replica.channel())
    sets = label_sets(5)
    ids = [(await stub.Allocate(identity_pb2.AllocateIdentityRequest(labels=s))).id
           for s in sets]
    await replica.cp.cache.wait_for((await replica.cp.etcd.status()).revision)
    asked = [sets[3], ["k8s:app=nobody"], ["reserved:host"], sets[0], sets[4], sets[3]]
    response = await stub.LookupMany(identity_pb2.LookupIdentitiesRequest(
        lookups=[identity_pb2.LookupIdentityRequest(labels=s) for s in asked]))
    assert [r.found for r in response.results] == [True, False, True, True, True, True]
    assert [r.identity.id for r in response.results] == [ids[3], 0, 1, ids[0], ids[4], ids[3]]
    unknown = response.results[1]
    assert not unknown.HasField("identity")
    assert list(response.results[2].identity.labels) == ["reserved:host"]
    assert list(response.results[0].identity.labels) == sorted(sets[3])
    assert response.results[0].identity.references == 1
    empty = await stub.LookupMany(identity_pb2.LookupIdentitiesRequest())
    assert list(empty.results) == []
