"""toFQDNs / rules.dns through PolicyService against a real etcd: each selector becomes an
`fqdn:` identity held by the policy, `Resolve` names it, endpoints cannot claim the label."""

from __future__ import annotations

import grpc
import pytest

from bulkhead.v1 import (
    endpoint_pb2,
    endpoint_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
)
from tests.conftest import ReplicaFactory, eventually

pytestmark = pytest.mark.timeout(60)

NS = "k8s:io.kubernetes.pod.namespace=default"
FQDN = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: to-api, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEntities: [host]
    toPorts:
    - ports: [{port: "53", protocol: ANY}]
      rules:
        dns: [{matchPattern: "*.world.test"}]
  - toFQDNs: [{matchName: API.world.test}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
"""


async def _true(value: bool) -> bool:
    return value


async def test_fqdn_selector_identity_resolved_and_released(replicas: ReplicaFactory) -> None:
    replica = await replicas(identity_gc_grace=0.2)
    client = (await identity_pb2_grpc.IdentityServiceStub(replica.channel()).Allocate(
        identity_pb2.AllocateIdentityRequest(labels=["k8s:app=client", NS]))).id
    policies = policy_pb2_grpc.PolicyServiceStub(replica.channel())
    await policies.Apply(policy_pb2.ApplyPoliciesRequest(yaml=FQDN))
    index = replica.cp.identity_index
    selector = index.by_labels["fqdn:api.world.test."]
    assert index.refs[selector] == {"policy:CiliumNetworkPolicy/default/to-api": 1}
    resolved = await policies.Resolve(policy_pb2.ResolvePolicyRequest(identity=client))
    assert list(resolved.dns_patterns) == ["*.world.test."]
    assert [(e.peer, e.peer_fqdn, e.protocol, e.port_lo) for e in resolved.entries] == [
        (1, "", "ANY", 53), (selector, "api.world.test.", "TCP", 80)]
    # policy trace answers for "an address learnt for api.world.test" by the selector's label.
    for dst, port, verdict in (("fqdn:api.world.test.", 80, "ALLOWED"),
                               ("fqdn:api.world.test.", 443, "DENIED"),
                               ("reserved:world", 80, "DENIED")):
        traced = await policies.Trace(policy_pb2.TracePolicyRequest(
            src_labels=["k8s:app=client", NS], dst_labels=[dst], dport=port, protocol="TCP"))
        assert traced.egress.verdict == verdict, (dst, port)
    await policies.Delete(policy_pb2.DeletePolicyRequest(
        policy=policy_pb2.PolicyRef(namespace="default", name="to-api")))
    assert await eventually(lambda: _true(selector not in index.by_id))


async def test_endpoints_cannot_claim_fqdn_labels(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    await node_pb2_grpc.NodeServiceStub(replica.channel()).Register(
        node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await endpoint_pb2_grpc.EndpointServiceStub(replica.channel()).Create(
            endpoint_pb2.CreateEndpointRequest(name="x", node="n1",
                                               labels=["fqdn:api.world.test.", NS]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "fqdn labels" in (err.value.details() or "")
