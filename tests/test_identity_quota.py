"""Identity quotas (--identity-max-labels, --identity-max-label-bytes,
--identity-max-total-label-bytes) against a real etcd and in-process replicas."""

from __future__ import annotations

import asyncio
import urllib.request

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
)
from controlplane import metrics
from controlplane.config import from_args
from controlplane.server import metrics_sources
from controlplane.store.embedded import free_port
from controlplane.store.keys import Keys
from tests.conftest import Replica, ReplicaFactory, eventually

pytestmark = pytest.mark.timeout(60)


def fat(n: int, tag: str = "a", width: int = 250) -> list[str]:
    """`n` labels of about `width` + 10 bytes each."""
    return [f"k8s:{tag}{i:03d}={'v' * width}" for i in range(n)]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def stub(replica: Replica) -> identity_pb2_grpc.IdentityServiceStub:
    return identity_pb2_grpc.IdentityServiceStub(replica.channel())


async def refused(replica: Replica, labels: list[str]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub(replica).Allocate(identity_pb2.AllocateIdentityRequest(labels=labels))
    return err.value


async def stored_identities(replica: Replica) -> int:
    kvs, _, _ = await replica.cp.etcd.range(Keys(replica.cp.config.cluster_name).identity_ids)
    return len(kvs)


async def test_label_bytes_per_identity_default_8_kib(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    assert len("".join(fat(31))) < 8192 < len("".join(fat(32)))
    await stub(replica).Allocate(identity_pb2.AllocateIdentityRequest(labels=fat(31)))
    err = await refused(replica, fat(32))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    [violation] = field_violations(err)
    assert violation.field == "labels" and "at most 8192 per identity" in violation.description
    assert await stored_identities(replica) == 1

    # An endpoint with such labels is refused the same way, and nothing of it is stored.
    await node_pb2_grpc.NodeServiceStub(replica.channel()).Register(
        node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    with pytest.raises(grpc.aio.AioRpcError) as ep_err:
        await endpoint_pb2_grpc.EndpointServiceStub(replica.channel()).Create(
            endpoint_pb2.CreateEndpointRequest(node="n1", name="fat", labels=fat(32, "b")))
    assert ep_err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(ep_err.value)] == ["labels"]
    keys = Keys(replica.cp.config.cluster_name)
    for prefix in (keys.endpoints, keys.ipcache):
        kvs, _, _ = await replica.cp.etcd.range(prefix)
        assert kvs == []
    assert await stored_identities(replica) == 1


async def test_labels_per_identity_count_after_noise_and_spare_existing_identities(
        replicas: ReplicaFactory) -> None:
    loose = await replicas()
    five = [f"k8s:l{i}=x" for i in range(5)]
    existing = await stub(loose).Allocate(identity_pb2.AllocateIdentityRequest(labels=five))
    strict = await replicas(identity_max_labels=4)
    await strict.cp.cache.wait_for((await strict.cp.etcd.status()).revision)

    err = await refused(strict, [f"k8s:m{i}=x" for i in range(5)])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    [violation] = field_violations(err)
    assert violation.field == "labels" and "at most 4 per identity" in violation.description
    # Noise labels are not part of the identity, so they do not count.
    ok = await stub(strict).Allocate(identity_pb2.AllocateIdentityRequest(
        labels=[f"k8s:m{i}=x" for i in range(4)] + ["k8s:pod-template-hash=abc"]))
    assert len(ok.labels) == 4
    # An identity stored before the limit was lowered stays usable.
    again = await stub(strict).Allocate(identity_pb2.AllocateIdentityRequest(labels=five))
    assert again.id == existing.id


async def test_total_label_bytes_of_the_cluster(replicas: ReplicaFactory) -> None:
    replica = await replicas(identity_max_total_label_bytes=2000, identity_gc_grace=0.0)
    ids = []
    for tag in ("a", "b", "c"):
        ids.append((await stub(replica).Allocate(identity_pb2.AllocateIdentityRequest(
            labels=fat(2, tag)))).id)   # 2 x 259 bytes each: 1,554 in all
        await replica.cp.cache.wait_for((await replica.cp.etcd.status()).revision)
    err = await refused(replica, fat(2, "d"))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len("".join(fat(2))) == 518
    assert "hold 1554 bytes" in (err.details() or "") and "2000" in (err.details() or "")
    assert await stored_identities(replica) == 3
    port = free_port()
    server = metrics.serve(metrics_sources(replica.cp), f"127.0.0.1:{port}")
    try:
        text = await asyncio.to_thread(scrape, port)
    finally:
        server.shutdown()
    assert "bulkhead_identity_label_bytes 1554.0" in text
    assert "bulkhead_identity_label_bytes_limit 2000.0" in text
    assert 'bulkhead_identity_allocations_total{result="over_quota"} 1.0' in text
    # A known label set is not new storage: it is still handed out.
    await stub(replica).Allocate(identity_pb2.AllocateIdentityRequest(labels=fat(2, "a")))

    # Once an identity is released and collected its bytes are free again.
    await stub(replica).Release(identity_pb2.ReleaseIdentityRequest(id=ids[2]))

    async def collected() -> bool:
        return ids[2] not in replica.cp.identity_index.by_id

    assert await eventually(collected)
    await stub(replica).Allocate(identity_pb2.AllocateIdentityRequest(labels=fat(2, "d")))


def test_quota_flags_are_checked() -> None:
    config = from_args(["--identity-max-labels", "16", "--identity-max-label-bytes", "4096",
                        "--identity-max-total-label-bytes", "1048576"])
    assert (config.identity_max_labels, config.identity_max_label_bytes,
            config.identity_max_total_label_bytes) == (16, 4096, 1 << 20)
    for bad in (["--identity-max-labels", "0"], ["--identity-max-labels", "65"],
                ["--identity-max-label-bytes", "100"],
                ["--identity-max-label-bytes", "9000", "--identity-max-total-label-bytes",
                 "8000"]):
        with pytest.raises(SystemExit):
            from_args(bad)
