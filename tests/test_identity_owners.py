"""References owned by endpoints and policies cannot be dropped or forged through the admin
API; reserved labels get a clear answer, never a retry loop. Real etcd, in-process replicas."""

from __future__ import annotations

import asyncio

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
    policy_pb2,
    policy_pb2_grpc,
    types_pb2,
)
from controlplane.store.keys import Keys
from tests.conftest import Replica, ReplicaFactory
from tests.test_cli import bulkhead

pytestmark = pytest.mark.timeout(60)

CIDR = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: to-cidr
  namespace: default
spec:
  endpointSelector:
    matchLabels:
      class: xwing
  egress:
  - toCIDR: [198.51.100.0/24]
"""


def identities(replica: Replica) -> identity_pb2_grpc.IdentityServiceStub:
    return identity_pb2_grpc.IdentityServiceStub(replica.channel())


async def endpoint(replica: Replica, name: str, labels: list[str]) -> types_pb2.Endpoint:
    await node_pb2_grpc.NodeServiceStub(replica.channel()).Register(
        node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    return await endpoint_pb2_grpc.EndpointServiceStub(replica.channel()).Create(
        endpoint_pb2.CreateEndpointRequest(node="n1", namespace="default", name=name,
                                           labels=labels))


async def refs(replica: Replica, ident: int) -> list[str]:
    keys = Keys(replica.cp.config.cluster_name)
    kvs, _, _ = await replica.cp.etcd.range(keys.identity_refs(ident))
    return [kv.key[len(keys.identity_refs(ident)):] for kv in kvs]


async def test_endpoint_reference_is_released_only_by_deleting_the_endpoint(
        replicas: ReplicaFactory) -> None:
    replica = await replicas(identity_gc_grace=0.0)
    web = await endpoint(replica, "web", ["k8s:app=web"])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await identities(replica).Release(identity_pb2.ReleaseIdentityRequest(
            id=web.identity, holder="endpoint:default/web"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "endpoint 'default/web'" in (err.value.details() or "")
    assert "endpoint delete" in (err.value.details() or "")
    # Nothing was dropped: the endpoint's reference keeps the identity from the collector.
    assert await refs(replica, web.identity) == ["endpoint:default/web"]
    assert await replica.cp.collector.collect_once() == 0
    got = await identities(replica).Get(identity_pb2.GetIdentityRequest(id=web.identity))
    assert list(got.labels) == [
        "k8s:app=web", f"k8s:io.cilium.k8s.policy.cluster={replica.cp.config.cluster_name}"]

    # The CLI prints the reason and exits 1.
    rc, out, stderr = await bulkhead(replica.address, "identity", "release", str(web.identity),
                                     "--holder", "endpoint:default/web")
    assert (rc, out) == (1, "")
    assert stderr.startswith("bulkhead: FAILED_PRECONDITION: cannot release the reference of "
                             "endpoint 'default/web'"), stderr
    assert "Traceback" not in stderr
    assert await refs(replica, web.identity) == ["endpoint:default/web"]

    # Deleting the endpoint is what drops it.
    await endpoint_pb2_grpc.EndpointServiceStub(replica.channel()).Delete(
        endpoint_pb2.DeleteEndpointRequest(namespace="default", name="web"))
    assert await refs(replica, web.identity) == []


async def test_allocate_cannot_forge_an_owner_reference(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    web = await endpoint(replica, "web", ["k8s:app=web"])
    for labels, holder in ((["k8s:app=web"], "endpoint:default/web"),
                           (["k8s:app=other"], "endpoint:default/web"),
                           (["k8s:app=pinned"], "endpoint:default/ghost"),
                           (["cidr:203.0.113.0/24"], "policy:CiliumNetworkPolicy/default/p")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await identities(replica).Allocate(identity_pb2.AllocateIdentityRequest(
                labels=labels, holder=holder))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, holder
        assert "cannot take a reference for" in (err.value.details() or "")
    # No reference was added: the endpoint still counts once and nothing else was created.
    assert await refs(replica, web.identity) == ["endpoint:default/web"]
    keys = Keys(replica.cp.config.cluster_name)
    kvs, _, _ = await replica.cp.etcd.range(keys.identity_ids)
    assert len(kvs) == 1
    # Holders of the admin's own choosing keep working (the endpoint's identity carries its
    # cluster's label).
    got = await identities(replica).Allocate(identity_pb2.AllocateIdentityRequest(
        labels=["k8s:app=web",
                f"k8s:io.cilium.k8s.policy.cluster={replica.cp.config.cluster_name}"],
        holder="team-a"))
    left = await identities(replica).Release(identity_pb2.ReleaseIdentityRequest(
        id=got.id, holder="team-a"))
    assert left.remaining_references == 1


async def test_policy_cidr_reference_is_released_only_by_deleting_the_policy(
        replicas: ReplicaFactory) -> None:
    replica = await replicas()
    policies = policy_pb2_grpc.PolicyServiceStub(replica.channel())
    await policies.Apply(policy_pb2.ApplyPoliciesRequest(yaml=CIDR))
    cidr = (await identities(replica).Lookup(identity_pb2.LookupIdentityRequest(
        labels=["cidr:198.51.100.0/24"]))).id
    holder = "policy:CiliumNetworkPolicy/default/to-cidr"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await identities(replica).Release(identity_pb2.ReleaseIdentityRequest(
            id=cidr, holder=holder))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "policy 'CiliumNetworkPolicy/default/to-cidr'" in (err.value.details() or "")
    assert await refs(replica, cidr) == [holder]


async def test_endpoint_with_a_reserved_or_cidr_label_is_refused_naming_the_label(
        replicas: ReplicaFactory) -> None:
    replica = await replicas()
    for labels, field in ((["reserved:world"], "labels[0]"),
                          (["k8s:app=a", "reserved:host"], "labels[1]"),
                          (["k8s:app=a", "cidr:198.51.100.0/24"], "labels[1]")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await asyncio.wait_for(endpoint(replica, "web", labels), 30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, labels
        violations = {v.field: v.description for v in field_violations(err.value)}
        assert field in violations, violations
        assert labels[-1].partition(":")[0] + " labels" in violations[field]
    keys = Keys(replica.cp.config.cluster_name)
    for prefix in (keys.endpoints, keys.ipcache, keys.identity_refs_prefix):
        kvs, _, _ = await replica.cp.etcd.range(prefix)
        assert kvs == []


async def test_allocate_with_reserved_labels_answers_at_once(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    world = await identities(replica).Allocate(identity_pb2.AllocateIdentityRequest(
        labels=["reserved:world"]))
    assert (world.id, list(world.labels)) == (2, ["reserved:world"])
    released = await identities(replica).Release(identity_pb2.ReleaseIdentityRequest(id=2))
    assert released.remaining_references == 0
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await identities(replica).Allocate(identity_pb2.AllocateIdentityRequest(
            labels=["reserved:world", "k8s:app=a"]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(err.value)] == ["labels"]
