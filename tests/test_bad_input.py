"""Bad input gets the right status and names the field, and nothing is stored."""

from __future__ import annotations

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
from controlplane.store.keys import Keys
from tests.conftest import Replica, ReplicaFactory

ALLOC = identity_pb2.AllocateIdentityRequest


async def stored(replica: Replica) -> list[str]:
    """Every key of the cluster but the replica's own presence announcement."""
    keys = Keys(replica.cp.config.cluster_name)
    kvs, _, _ = await replica.cp.etcd.range(keys.prefix)
    return [kv.key for kv in kvs if not kv.key.startswith(keys.replicas)]
CASES = [
    ("empty label set", ALLOC(labels=[]), grpc.StatusCode.INVALID_ARGUMENT, "labels"),
    ("10,000 labels", ALLOC(labels=[f"k8s:k{i}=v" for i in range(10_000)]),
     grpc.StatusCode.INVALID_ARGUMENT, "labels"),
    ("no '=' outside reserved:", ALLOC(labels=["k8s:novalue"]),
     grpc.StatusCode.INVALID_ARGUMENT, "labels[0]"),
    ("key, two /", ALLOC(labels=["k8s:a/b/c=d"]), grpc.StatusCode.INVALID_ARGUMENT, "labels[0]"),
    ("key with ;", ALLOC(labels=["k8s:a;b=c"]), grpc.StatusCode.INVALID_ARGUMENT, "labels[0]"),
    ("key with NUL", ALLOC(labels=["k8s:a\0b=c"]), grpc.StatusCode.INVALID_ARGUMENT,
     "labels[0]"),
    ("value ending in a newline", ALLOC(labels=["k8s:app=web\n"]),
     grpc.StatusCode.INVALID_ARGUMENT, "labels[0]"),
    ("oversize request", ALLOC(labels=["k8s:a=" + "x" * (5 << 20)]),
     grpc.StatusCode.RESOURCE_EXHAUSTED, None),
]


@pytest.mark.parametrize(("case", "request_", "code", "field"), CASES, ids=[c[0] for c in CASES])
async def test_identity_bad_input(replicas: ReplicaFactory, case: str, request_: object,
                                  code: grpc.StatusCode, field: str | None) -> None:
    replica = await replicas()
    stub = identity_pb2_grpc.IdentityServiceStub(replica.channel())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Allocate(request_)
    assert err.value.code() == code
    if field:
        assert field in [v.field for v in field_violations(err.value)]
    assert await stored(replica) == [], "bad input stored something"


async def test_endpoint_bad_input_reports_every_field(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    stub = endpoint_pb2_grpc.EndpointServiceStub(replica.channel())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Create(endpoint_pb2.CreateEndpointRequest(
            node="", namespace="Bad_NS", name="", labels=["nope"], ip="300.1.1.1"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field for v in field_violations(err.value)}
    assert fields == {"node", "namespace", "name", "labels[0]", "ip"}


async def test_unknown_node_is_not_found_and_nothing_stored(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    stub = endpoint_pb2_grpc.EndpointServiceStub(replica.channel())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Create(endpoint_pb2.CreateEndpointRequest(node="ghost", name="a",
                                                             labels=["k8s:a=b"]))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert await stored(replica) == []


async def test_node_bad_input(replicas: ReplicaFactory) -> None:
    stub = node_pb2_grpc.NodeServiceStub((await replicas()).channel())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Register(node_pb2.RegisterNodeRequest(name="N_1", underlay_ip="nope"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in field_violations(err.value)} == {"name", "underlay_ip"}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Register(node_pb2.RegisterNodeRequest(name="n1\n", underlay_ip="192.0.2.1"))
    assert {v.field for v in field_violations(err.value)} == {"name"}


def lookups(*sets: list[str]) -> identity_pb2.LookupIdentitiesRequest:
    return identity_pb2.LookupIdentitiesRequest(
        lookups=[identity_pb2.LookupIdentityRequest(labels=s) for s in sets])


async def test_lookup_many_limits_the_batch(replicas: ReplicaFactory) -> None:
    stub = identity_pb2_grpc.IdentityServiceStub((await replicas()).channel())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.LookupMany(lookups(*[[f"k8s:n=n{i}"] for i in range(1025)]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(err.value)] == ["lookups"]
    full = await stub.LookupMany(lookups(*[[f"k8s:n=n{i}"] for i in range(1024)]))
    assert len(full.results) == 1024 and not any(r.found for r in full.results)


async def test_lookup_many_names_the_bad_item(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    stub = identity_pb2_grpc.IdentityServiceStub(replica.channel())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.LookupMany(lookups(["k8s:a=b"], ["reserved:world"], ["k8s:ok=1", "k8s:a/b/c=d"],
                                      []))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(err.value)] == ["lookups[2].labels[1]",
                                                              "lookups[3].labels"]
    assert await stored(replica) == [], "a lookup stored something"
