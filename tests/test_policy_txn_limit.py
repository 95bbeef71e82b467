"""One `policy apply` is one etcd transaction, all or nothing. The embedded etcd takes the 256
documents the README allows; an external etcd with its default --max-txn-ops (128, as the
session etcd here) refuses a bigger transaction, and the apply says so, naming `documents`,
with nothing stored."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest

from bulkhead.rpcerror import field_violations
from bulkhead.v1 import policy_pb2, policy_pb2_grpc
from controlplane.config import Config
from controlplane.policy.parse import MAX_DOCUMENTS
from tests.conftest import Replica, ReplicaFactory, start_replica

pytestmark = pytest.mark.timeout(180)


def documents(first: int, last: int, cidr: bool = False) -> str:
    """Policies p<first>..p<last-1>; with `cidr`, each allows egress to two /32 of its own
    (`last` at most 256)."""
    docs = []
    for i in range(first, last):
        egress = (f"  egress:\n  - toCIDR: [203.0.113.{i}/32, 198.51.100.{i}/32]\n" if cidr else
                  "  ingress:\n  - fromEndpoints:\n    - matchLabels: {app: web}\n")
        docs.append("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n"
                    f"metadata:\n  name: p{i}\nspec:\n  endpointSelector:\n"
                    f"    matchLabels: {{app: db{i}}}\n{egress}")
    return "---\n".join(docs)


async def apply(replica: Replica, text: str) -> policy_pb2.ApplyPoliciesResponse:
    stub = policy_pb2_grpc.PolicyServiceStub(replica.channel())
    return await stub.Apply(policy_pb2.ApplyPoliciesRequest(yaml=text), timeout=120)


async def policy_and_ref_keys(replica: Replica) -> list[str]:
    keys = replica.cp.keys
    kvs, _, _ = await replica.cp.etcd.range(keys.policies)
    refs, _, _ = await replica.cp.etcd.range(keys.identity_refs_prefix)
    return [kv.key for kv in kvs] + [kv.key for kv in refs if "/policy:" in kv.key]


@pytest.mark.parametrize(("count", "cidr"), [(129, False), (MAX_DOCUMENTS, False), (70, True)])
async def test_more_than_an_external_etcd_takes_is_refused_whole(
        replicas: ReplicaFactory, count: int, cidr: bool) -> None:
    replica = await replicas()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await apply(replica, documents(0, count, cidr))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    [violation] = field_violations(err.value)
    assert violation.field == "documents"
    assert f"{count} documents" in violation.description
    assert "--max-txn-ops" in violation.description
    assert await policy_and_ref_keys(replica) == [], "a refused apply left something behind"


async def test_reading_more_than_fits_one_transaction(replicas: ReplicaFactory) -> None:
    """200 documents of which 100 are new: the read takes several transactions, the write
    (100 puts) fits one."""
    replica = await replicas()
    await apply(replica, documents(0, 100))
    result = await apply(replica, documents(0, 200))
    actions = [a.action for a in result.policies]
    assert actions.count("unchanged") == 100 and actions.count("created") == 100
    again = await apply(replica, documents(0, 200))
    assert {a.action for a in again.policies} == {"unchanged"}


async def test_the_embedded_etcd_takes_the_documented_limit(tmp_path: Path) -> None:
    replica = await start_replica(Config(state_dir=tmp_path, listen="127.0.0.1:0",
                                         cluster_name=f"t{uuid.uuid4().hex[:10]}"))
    try:
        assert replica.cp.config.embedded
        result = await apply(replica, documents(0, MAX_DOCUMENTS))
        assert [a.action for a in result.policies] == ["created"] * MAX_DOCUMENTS
        assert {a.policy.revision for a in result.policies} == {result.revision}, \
            "not one transaction"
        with_cidrs = await apply(replica, documents(0, MAX_DOCUMENTS, cidr=True))
        assert [a.action for a in with_cidrs.policies] == ["configured"] * MAX_DOCUMENTS
        listed = await policy_pb2_grpc.PolicyServiceStub(replica.channel()).List(
            policy_pb2.ListPoliciesRequest())
        assert len(listed.policies) == MAX_DOCUMENTS
    finally:
        await replica.stop()


async def test_an_external_etcd_takes_128_policies(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    result = await apply(replica, documents(0, 128))
    assert [a.action for a in result.policies] == ["created"] * 128
