"""The control plane against etcd in containers: one member, and a 3-member cluster reached
through several endpoints (one of which is stopped mid-way)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import grpc
import pytest

from bulkhead.v1 import identity_pb2, identity_pb2_grpc, node_pb2, node_pb2_grpc
from controlplane.config import Config
from integration.etcd_containers import etcd_cluster
from tests.conftest import start_replica

pytestmark = pytest.mark.docker


def config(endpoints: list[str], cluster: str) -> Config:
    return Config(etcd_endpoints=endpoints, cluster_name=cluster, state_dir=Path("/tmp"))


async def allocate_all(address: str, sets: list[list[str]]) -> list[int]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        sem = asyncio.Semaphore(20)

        async def one(labels: list[str]) -> int:
            async with sem:
                return (await stub.Allocate(identity_pb2.AllocateIdentityRequest(
                    labels=labels))).id

        return list(await asyncio.gather(*(one(s) for s in sets)))


@pytest.mark.parametrize("members", [1, 3])
async def test_replicas_agree_on_containerised_etcd(members: int) -> None:
    cluster = f"c{uuid.uuid4().hex[:8]}"
    sets = [[f"k8s:app=a{i}", f"k8s:group=g{i % 5}"] for i in range(200)]
    with etcd_cluster(members) as etcd:
        endpoints = etcd.endpoints
        # Each replica prefers a different member when there are several.
        a = await start_replica(config(endpoints, cluster))
        b = await start_replica(config(endpoints[::-1], cluster))
        try:
            ids_a, ids_b = await asyncio.gather(allocate_all(a.address, sets),
                                                allocate_all(b.address, sets))
            assert ids_a == ids_b
            assert len(set(ids_a)) == len(sets)
            async with grpc.aio.insecure_channel(a.address) as channel:
                node = await node_pb2_grpc.NodeServiceStub(channel).Register(
                    node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
            assert node.pod_cidr
            if members == 3:
                # Losing one member keeps the cluster and both replicas serving.
                etcd.stop_member(0)
                more = [[f"k8s:app=b{i}"] for i in range(50)]
                ids_a, ids_b = await asyncio.gather(allocate_all(a.address, more),
                                                    allocate_all(b.address, more))
                assert ids_a == ids_b and len(set(ids_a)) == len(more)
        finally:
            await a.stop()
            await b.stop()
