"""Regression tests for what the fuzz suites (tests/fuzz) found."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bulkhead.rpcerror import field_violations
from bulkhead.v1 import endpoint_pb2, endpoint_pb2_grpc
from controlplane.store.etcd import EtcdRequestTooLarge
from tests.conftest import ReplicaFactory
from tests.test_bad_input import stored

HUGE_NAME = "é" * (1 << 20)  # 2 MiB of UTF-8: more than etcd accepts in one request


@pytest.mark.parametrize("method", ["Delete", "Get"])
async def test_endpoint_reference_with_a_huge_name(replicas: ReplicaFactory,
                                                   method: str) -> None:
    """EndpointService.Delete/Get with a 1 MiB name answered INTERNAL (etcd refused the key as
    too large); now INVALID_ARGUMENT on `name`, as Create answers, nothing stored."""
    replica = await replicas()
    stub = endpoint_pb2_grpc.EndpointServiceStub(replica.channel())
    request = (endpoint_pb2.DeleteEndpointRequest if method == "Delete"
               else endpoint_pb2.GetEndpointRequest)(namespace="default", name=HUGE_NAME)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await getattr(stub, method)(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(err.value)] == ["name"]
    assert await stored(replica) == []


async def test_etcd_refusing_a_too_large_request_is_a_domain_error(
        replicas: ReplicaFactory) -> None:
    """Any path that hands etcd a key or value beyond its request limit gets
    RESOURCE_EXHAUSTED naming the limit, never an unmapped etcd error (INTERNAL)."""
    replica = await replicas()
    with pytest.raises(EtcdRequestTooLarge, match="max-request-bytes"):
        await replica.cp.etcd.get("/x/" + HUGE_NAME)


async def test_health_list_is_served_and_refuses_bytes_that_do_not_decode(
        replicas: ReplicaFactory) -> None:
    """Health/List answered UNIMPLEMENTED, and UNKNOWN to bytes that do not decode (the
    library's servicer is synchronous there, out of rpcguard's reach); found by the raw-bytes
    fuzz. Now it lists every service's status, and malformed bytes are INVALID_ARGUMENT on
    `request`."""
    replica = await replicas()
    channel = replica.channel()
    listed = await health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest())
    assert listed.statuses["bulkhead.v1.IdentityService"].status == \
        health_pb2.HealthCheckResponse.SERVING
    raw = channel.unary_unary("/grpc.health.v1.Health/List")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await raw(b"\xff" * 10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(err.value)] == ["request"]
