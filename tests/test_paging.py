"""Paged lists: pages bounded by bytes as well as by count, and page tokens that are checked.
Real etcd, in-process replicas, and the `bulkhead` CLI as an operator runs it."""

from __future__ import annotations

import asyncio
import base64
import json

import grpc
import pytest

from bulkhead.reserved import RESERVED
from bulkhead.rpcerror import field_violations
from bulkhead.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    endpoint_pb2,
    endpoint_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
)
from tests.conftest import Replica, ReplicaFactory
from tests.test_cli import bulkhead

pytestmark = pytest.mark.timeout(240)

GRPC_LIMIT = 4 << 20


async def fat_identities(replica: Replica, count: int) -> list[int]:
    """`count` identities of 64 labels of 250-character values (about 16.6 KB each)."""
    stub = identity_pb2_grpc.IdentityServiceStub(replica.channel())
    ids: list[int] = []
    for start in range(0, count, 50):
        batch = await asyncio.gather(*(
            stub.Allocate(identity_pb2.AllocateIdentityRequest(
                labels=[f"k8s:k{j:02d}=v{i:05d}{'x' * 244}" for j in range(64)]))
            for i in range(start, min(count, start + 50))))
        ids.extend(ident.id for ident in batch)
    await replica.cp.cache.wait_for((await replica.cp.etcd.status()).revision)
    return ids


async def test_identity_pages_stay_under_the_grpc_limit(replicas: ReplicaFactory) -> None:
    replica = await replicas(identity_max_label_bytes=32 << 10)
    ids = await fat_identities(replica, 300)   # ~5 MB: over 4 MiB at the default 500 a page
    admin = admin_pb2_grpc.AdminServiceStub(replica.channel())

    seen: list[int] = []
    request = admin_pb2.ListIdentitiesRequest(page_size=5000)
    pages = 0
    while True:
        page = await admin.ListIdentities(request)
        pages += 1
        assert page.ByteSize() < GRPC_LIMIT // 2
        seen.extend(i.id for i in page.identities)
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert pages > 1
    assert seen == sorted(set(RESERVED.values()) | set(ids))

    rc, out, err = await bulkhead(replica.address, "identity", "list", "-o", "json")
    assert rc == 0, err
    listed = json.loads(out)
    assert [i["id"] for i in listed] == seen
    assert all(len(i["labels"]) == 64 for i in listed if i["id"] in set(ids))


async def _lists(replica: Replica) -> dict[str, tuple[object, type]]:
    admin = admin_pb2_grpc.AdminServiceStub(replica.channel())
    return {"identities": (admin.ListIdentities, admin_pb2.ListIdentitiesRequest),
            "nodes": (admin.ListNodes, admin_pb2.ListNodesRequest),
            "endpoints": (admin.ListEndpoints, admin_pb2.ListEndpointsRequest),
            "ipcache": (admin.ListIPCache, admin_pb2.ListIPCacheRequest)}


async def test_page_tokens_are_checked_on_every_list(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    nodes = node_pb2_grpc.NodeServiceStub(replica.channel())
    endpoints = endpoint_pb2_grpc.EndpointServiceStub(replica.channel())
    for n in range(3):
        await nodes.Register(node_pb2.RegisterNodeRequest(name=f"n{n}",
                                                          underlay_ip=f"192.0.2.{n + 1}"))
        await endpoints.Create(endpoint_pb2.CreateEndpointRequest(
            node=f"n{n}", name=f"ep{n}", labels=[f"k8s:app=a{n}"]))
    await replica.cp.cache.wait_for((await replica.cp.etcd.status()).revision)
    lists = await _lists(replica)

    tokens: dict[str, str] = {}
    for name, (call, request_type) in lists.items():
        # Walking a list two at a time gives each item once.
        request = request_type(page_size=2)
        walked: list[str] = []
        while True:
            page = await call(request)   # type: ignore[operator]
            items = page.ListFields()[0][1]
            walked.extend(str(item) for item in items)
            if not page.next_page_token:
                break
            tokens[name] = page.next_page_token
            request.page_token = page.next_page_token
        whole = await call(request_type())   # type: ignore[operator]
        assert walked == [str(item) for item in whole.ListFields()[0][1]], name

    garbage = ["garbage", "0000000300", "n1", "default/ep1", "10.0.0.2/32", "!!!!",
               base64.urlsafe_b64encode(b"\xff\xfe").decode(), "=" * 8, "x" * 5000]
    for name, (call, request_type) in lists.items():
        others = [t for other, t in tokens.items() if other != name]
        for token in garbage + others + [tokens[name] + "A", " " + tokens[name]]:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(request_type(page_token=token))   # type: ignore[operator]
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, token)
            assert [v.field for v in field_violations(err.value)] == ["page_token"], name

    rc, out, err_text = await bulkhead(replica.address, "node", "list")
    assert rc == 0 and "n2" in out, err_text
