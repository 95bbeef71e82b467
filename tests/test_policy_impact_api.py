"""PolicyImpactService (the console's what-if) against a real etcd and a real replica:
connections traced against the stored policies and a proposed set, nothing stored."""

from __future__ import annotations

import grpc
import pytest

from bulkhead.rpcerror import field_violations
from bulkhead.v1 import policy_pb2, policy_pb2_grpc, policyimpact_pb2, policyimpact_pb2_grpc
from integration.lab.story import POLICY
from tests.conftest import ReplicaFactory

pytestmark = pytest.mark.timeout(60)

NS = "k8s:io.kubernetes.pod.namespace=default"
XWING = ["k8s:org=alliance", "k8s:class=xwing", NS]
TIE = ["k8s:org=empire", "k8s:class=tiefighter", NS]
DEATH = ["k8s:org=empire", "k8s:class=deathstar", NS]
L7 = (POLICY.parent / "sw_l3_l4_l7_policy.yaml").read_text()


def conn(src: list[str], port: int = 80, side: str = "", method: str = "",
         path: str = "") -> policyimpact_pb2.ProposedConnection:
    return policyimpact_pb2.ProposedConnection(src_labels=src, dst_labels=DEATH, dport=port,
                                               protocol="TCP", side=side, http_method=method,
                                               http_path=path)


async def test_removing_rule1_changes_only_the_xwing(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    policies = policy_pb2_grpc.PolicyServiceStub(replica.channel())
    applied = await policies.Apply(policy_pb2.ApplyPoliciesRequest(yaml=POLICY.read_text()))
    impact = policyimpact_pb2_grpc.PolicyImpactServiceStub(replica.channel())
    found = await impact.TraceProposed(policyimpact_pb2.TraceProposedRequest(
        remove=[policy_pb2.PolicyRef(namespace="default", name="rule1")],
        connections=[conn(XWING, side="ingress"), conn(TIE, side="ingress"),
                     conn(XWING, side="egress")]))
    xwing, tie, xwing_egress = found.results
    assert (xwing.current.verdict, xwing.current.ingress.reason) == ("DENIED", "default-deny")
    assert [o.name for o in xwing.current.ingress.enforced_by] == ["rule1"]
    assert (xwing.proposed.verdict, xwing.proposed.ingress.reason) == ("ALLOWED",
                                                                       "default-allow")
    assert xwing.changed
    assert tie.current.ingress.reason == "default/rule1 spec.ingress[0]"
    assert tie.proposed.ingress.reason == "default-allow" and not tie.changed
    assert not xwing_egress.changed  # the xwing's egress allowed it either way
    # nothing stored: rule1 is still there at its revision, and still denies the xwing
    listed = await policies.List(policy_pb2.ListPoliciesRequest())
    assert [(p.name, p.revision) for p in listed.policies] == [
        ("rule1", applied.policies[0].policy.revision)]
    trace = await policies.Trace(policy_pb2.TracePolicyRequest(
        src_labels=XWING, dst_labels=DEATH, dport=80, protocol="TCP"))
    assert trace.verdict == "DENIED"


async def test_an_edited_policy_replaces_the_stored_one(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    policies = policy_pb2_grpc.PolicyServiceStub(replica.channel())
    await policies.Apply(policy_pb2.ApplyPoliciesRequest(yaml=POLICY.read_text()))
    impact = policyimpact_pb2_grpc.PolicyImpactServiceStub(replica.channel())
    found = await impact.TraceProposed(policyimpact_pb2.TraceProposedRequest(
        yaml=L7, connections=[conn(TIE, method="PUT", path="/v1/exhaust-port"),
                              conn(TIE, method="POST", path="/v1/request-landing")]))
    attack, landing = found.results
    assert (attack.current.verdict, attack.proposed.verdict, attack.changed) == (
        "ALLOWED", "DENIED", True)
    assert attack.proposed.ingress.reason == "no HTTP rule allows the request"
    assert not landing.changed
    assert landing.proposed.ingress.reason == (
        "default/rule1 spec.ingress[0].toPorts[0].rules.http[0]")
    assert [(p.namespace, p.name) for p in found.policies] == [("default", "rule1")]
    assert "request-landing" in found.policies[0].yaml


async def test_problems_are_reported_at_their_paths(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    impact = policyimpact_pb2_grpc.PolicyImpactServiceStub(replica.channel())
    bad = POLICY.read_text().replace('port: "80"', 'port: "99999"')
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await impact.TraceProposed(policyimpact_pb2.TraceProposedRequest(yaml=bad))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(err.value)] == [
        "spec.ingress[0].toPorts[0].ports[0].port"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await impact.TraceProposed(policyimpact_pb2.TraceProposedRequest(
            remove=[policy_pb2.PolicyRef(namespace="default", name="absent")],
            connections=[conn(TIE, side="sideways")]))
    assert [v.field for v in field_violations(err.value)] == ["connections[0].side",
                                                              "remove[0]"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await impact.TraceProposed(policyimpact_pb2.TraceProposedRequest(
            connections=[conn(TIE), conn(TIE, port=0)]))
    assert [v.field for v in field_violations(err.value)] == ["connections[1].dport"]
    # the YAML alone validates: a good one answers with its normalized policy
    ok = await impact.TraceProposed(policyimpact_pb2.TraceProposedRequest(
        yaml=POLICY.read_text()))
    assert [p.name for p in ok.policies] == ["rule1"] and not ok.results
