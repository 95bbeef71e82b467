"""The control plane's Prometheus endpoint shows what the operator would alert on."""

from __future__ import annotations

import asyncio
import urllib.request

from bulkhead.v1 import identity_pb2, identity_pb2_grpc
from controlplane import metrics
from controlplane.server import metrics_sources
from controlplane.store.embedded import free_port
from tests.conftest import ReplicaFactory


async def test_metrics_count_allocations_and_objects(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    port = free_port()
    server = metrics.serve(metrics_sources(replica.cp), f"127.0.0.1:{port}")
    try:
        stub = identity_pb2_grpc.IdentityServiceStub(replica.channel())
        for _ in range(2):
            await stub.Allocate(identity_pb2.AllocateIdentityRequest(labels=["k8s:app=m"]))
        # Twenty new sets at once: while the first transaction is in flight the others wait
        # and share the next ones.
        await asyncio.gather(*(stub.Allocate(identity_pb2.AllocateIdentityRequest(
            labels=[f"k8s:app=g{i}"])) for i in range(20)))
        await replica.cp.cache.wait_for((await replica.cp.etcd.status()).revision)

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return str(r.read().decode())

        text = await asyncio.to_thread(scrape)
        assert 'bulkhead_identity_allocations_total{result="new"} 21.0' in text
        assert 'bulkhead_identity_allocations_total{result="existing"} 1.0' in text
        assert 'bulkhead_objects{kind="identities"} 21.0' in text
        values = dict(row.split(" ", 1) for row in text.splitlines() if not row.startswith("#"))
        txns = float(values["bulkhead_identity_merged_txns_total"])
        merged = float(values["bulkhead_identity_merged_allocations_total"])
        assert 1 <= txns < merged <= 20
        assert "bulkhead_subscribers 0.0" in text
        assert "bulkhead_policy_resolutions_total" in text
    finally:
        server.shutdown()
