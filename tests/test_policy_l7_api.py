"""L7 HTTP policy through the API and the CLI against a real etcd and replicas: the demo's
sw_l3_l4_l7_policy.yaml applied, resolved and traced (request by request), bad L7 input refused
with its path and nothing stored, and what a subscribed node receives."""

from __future__ import annotations

import json

import grpc
import pytest

from bulkhead.rpcerror import field_violations
from bulkhead.v1 import node_pb2, node_pb2_grpc, policy_pb2, subscription_pb2
from integration.lab.story import POLICY
from tests.conftest import Replica, ReplicaFactory
from tests.test_cli import bulkhead
from tests.test_policy_api import NS, Writes, make_endpoint, stub

pytestmark = pytest.mark.timeout(90)

L7_POLICY = POLICY.with_name("sw_l3_l4_l7_policy.yaml")
TIEFIGHTER = f"k8s:org=empire,k8s:class=tiefighter,{NS}"
XWING = f"k8s:org=alliance,k8s:class=xwing,{NS}"
DEATHSTAR = f"k8s:org=empire,k8s:class=deathstar,{NS}"
LANDING = subscription_pb2.HttpRule(method="POST", path="/v1/request-landing")
HTTP = subscription_pb2.PolicyEntry.HTTP


async def starwars(replica: Replica) -> tuple[int, int, int]:
    await node_pb2_grpc.NodeServiceStub(replica.channel()).Register(
        node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    return (await make_endpoint(replica, "n1", "deathstar", DEATHSTAR.split(",")),
            await make_endpoint(replica, "n1", "tiefighter", TIEFIGHTER.split(",")),
            await make_endpoint(replica, "n1", "xwing", XWING.split(",")))


def trace_request(src: str, method: str = "", path: str = "", **more: object
                  ) -> policy_pb2.TracePolicyRequest:
    return policy_pb2.TracePolicyRequest(src_labels=src.split(","),
                                         dst_labels=DEATHSTAR.split(","), dport=80,
                                         protocol="TCP", http_method=method, http_path=path,
                                         **more)  # type: ignore[arg-type]


def test_the_lab_ships_the_demo_policy_unchanged() -> None:
    shared = POLICY.parents[3] / "shared" / "starwars" / "sw_l3_l4_l7_policy.yaml"
    if not shared.exists():
        pytest.skip("the shared demo files are not beside this checkout")
    assert L7_POLICY.read_bytes() == shared.read_bytes()


async def test_demo_policy_resolves_and_traces_request_by_request(
        replicas: ReplicaFactory) -> None:
    replica = await replicas()
    deathstar, tiefighter, _ = await starwars(replica)
    policies = stub(replica)
    applied = await policies.Apply(policy_pb2.ApplyPoliciesRequest(yaml=L7_POLICY.read_text()))
    assert list(applied.affected_identities) == [deathstar]
    resolved = await policies.Resolve(policy_pb2.ResolvePolicyRequest(identity=deathstar))
    assert [(e.peer, e.protocol, e.port_lo, e.verdict, e.l7, list(e.http))
            for e in resolved.entries] == [(p, "TCP", 80, "allow", HTTP, [LANDING])
                                           for p in sorted({deathstar, tiefighter})]

    landing = await policies.Trace(trace_request(TIEFIGHTER, "POST", "/v1/request-landing"))
    assert landing.verdict == "ALLOWED"
    assert landing.ingress.reason == "default/rule1 spec.ingress[0].toPorts[0].rules.http[0]"
    assert landing.ingress.http_decided_by.item == "toPorts[0].rules.http[0]"
    assert landing.ingress.http_decided_by.rule == LANDING
    assert landing.egress.reason == "default-allow"       # the tiefighter's egress is open

    exhaust = await policies.Trace(trace_request(TIEFIGHTER, "PUT", "/v1/exhaust-port"))
    assert exhaust.verdict == "DENIED"
    assert exhaust.ingress.reason == "no HTTP rule allows the request"
    assert [(i.origin.name, i.origin.rule, i.item) for i in exhaust.ingress.http_rules] == [
        ("rule1", "spec.ingress[0]", "toPorts[0].rules.http[0]")]
    for path in ("/v1/request-landing1", "/v1/request-landing/x"):    # whole-value match
        other = await policies.Trace(trace_request(TIEFIGHTER, "POST", path))
        assert other.verdict == "DENIED"

    xwing = await policies.Trace(trace_request(XWING, "POST", "/v1/request-landing"))
    assert xwing.verdict == "DENIED"
    assert xwing.ingress.reason == "default-deny" and not xwing.ingress.http_rules  # L3/L4

    plain = await policies.Trace(trace_request(TIEFIGHTER))
    assert plain.verdict == "ALLOWED"
    assert plain.ingress.reason == "requests checked by HTTP rules"
    assert [i.rule for i in plain.ingress.http_rules] == [LANDING]


async def test_cli_resolve_and_trace_show_the_http_rules(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    deathstar, _, _ = await starwars(replica)
    rc, out, err = await bulkhead(replica.address, "policy", "apply", "-f", str(L7_POLICY))
    assert rc == 0, err
    rc, out, _ = await bulkhead(replica.address, "policy", "resolve", "--identity",
                                str(deathstar))
    assert rc == 0 and "HTTP" in out.splitlines()[1]
    assert "method=POST path=/v1/request-landing" in out
    rc, out, _ = await bulkhead(replica.address, "policy", "resolve", "--identity",
                                str(deathstar), "-o", "json")
    entries = json.loads(out)["entries"]
    assert {e["l7"] for e in entries} == {"HTTP"}
    assert entries[0]["http"] == [{"method": "POST", "path": "/v1/request-landing", "host": "",
                                   "headers": [], "header_matches": []}]
    rc, out, _ = await bulkhead(replica.address, "policy", "trace", "--src", TIEFIGHTER,
                                "--dst", DEATHSTAR, "--dport", "80/TCP", "--http-method", "PUT",
                                "--http-path", "/v1/exhaust-port")
    assert rc == 0 and out.startswith("DENIED") and "PUT /v1/exhaust-port" in out.splitlines()[0]
    assert "ingress  DENIED   no HTTP rule allows the request" in out
    rc, out, _ = await bulkhead(replica.address, "policy", "trace", "--src", TIEFIGHTER,
                                "--dst", DEATHSTAR, "--dport", "80/TCP", "--http-method", "POST",
                                "--http-path", "/v1/request-landing", "--http-header",
                                "X-Ignored: 1", "-o", "json")
    traced = json.loads(out)
    assert traced["verdict"] == "ALLOWED"
    assert traced["ingress"]["http_decided_by"]["rule"] == (
        "spec.ingress[0].toPorts[0].rules.http[0]")
    rc, out, _ = await bulkhead(replica.address, "policy", "trace", "--src", TIEFIGHTER,
                                "--dst", DEATHSTAR, "--dport", "80/TCP")
    assert rc == 0 and out.startswith("ALLOWED")
    assert "requests checked by HTTP rules:" in out
    assert ("default/rule1 spec.ingress[0].toPorts[0].rules.http[0]  "
            "method=POST path=/v1/request-landing") in out
    rc, out, err = await bulkhead(replica.address, "policy", "trace", "--src", TIEFIGHTER,
                                  "--dst", DEATHSTAR, "--dport", "80/TCP", "--http-path", "/")
    assert rc == 1 and "INVALID_ARGUMENT" in err and "http_method: is required" in err


async def test_trace_http_fields_are_validated(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    policies = stub(replica)
    for request, field in (
            (trace_request(TIEFIGHTER, path="/"), "http_method"),
            (trace_request(TIEFIGHTER, "GET"), "http_path"),
            (trace_request(TIEFIGHTER, "GE T", "/"), "http_method"),
            (trace_request(TIEFIGHTER, "GET", "/", http_headers=["no colon"]), "http_headers[0]"),
            (policy_pb2.TracePolicyRequest(src_labels=[NS], dst_labels=[NS], dport=53,
                                           protocol="UDP", http_method="GET", http_path="/"),
             "protocol")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await policies.Trace(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in field_violations(err.value)] == [field]


async def test_bad_l7_rules_are_refused_with_their_path_and_nothing_is_stored(
        replicas: ReplicaFactory) -> None:
    replica = await replicas()
    policies = stub(replica)
    writes = Writes(replica)
    await writes.settled(replica)
    good = L7_POLICY.read_text()
    bad = good.replace("rule1", "rule2").replace(
        '          path: "/v1/request-landing"',
        '          path: "/v1/request-landing"\n        - path: "/v1/("')
    deny = good.replace("rule1", "rule3").replace("  ingress:", "  ingressDeny:")
    kafka = good.replace("rule1", "rule4").replace("        http:", "        kafka:")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await policies.Apply(policy_pb2.ApplyPoliciesRequest(
            yaml="---\n".join([good, bad, deny, kafka])))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(err.value)] == [
        "documents[1].spec.ingress[0].toPorts[0].rules.http[1].path",
        "documents[2].spec.ingressDeny[0].toPorts[0].rules",
        "documents[3].spec.ingress[0].toPorts[0].rules.kafka"]
    assert await writes.settled(replica) == []
    assert not (await policies.List(policy_pb2.ListPoliciesRequest())).policies


async def test_a_node_gets_l7_entries_and_no_delta_when_the_union_is_unchanged(
        replicas: ReplicaFactory) -> None:
    replica = await replicas()
    deathstar, tiefighter, _ = await starwars(replica)
    history = replica.cp.subscriptions.history
    policies = stub(replica)

    def entries_at(revision: int) -> list[subscription_pb2.PolicyEntry] | None:
        """deathstar's entries as node n1 received them in the delta of `revision`."""
        deltas = [d for d in history.since(revision - 1) if d.revision == revision]
        body = deltas[0].body_for("n1") if deltas else None
        delta = subscription_pb2.Delta.FromString(body or b"")
        found = [c.policy for c in delta.changes if c.WhichOneof("object") == "policy"
                 and c.policy.identity == deathstar]
        return list(found[0].entries) if found else None

    two = L7_POLICY.read_text().replace(
        '          path: "/v1/request-landing"',
        '          path: "/v1/request-landing"\n        - method: "GET"')
    applied = await policies.Apply(policy_pb2.ApplyPoliciesRequest(yaml=two))
    got = entries_at(applied.revision)
    assert got is not None
    assert [(e.peer, e.l7, list(e.http)) for e in got] == [
        (p, HTTP, [subscription_pb2.HttpRule(method="GET"), LANDING])
        for p in sorted({deathstar, tiefighter})]
    # A second policy whose rule the union already has: resolution reports the identity, the
    # message is byte-identical, and the node gets no delta for it.
    subset = L7_POLICY.read_text().replace("rule1", "rule2").replace(
        '        - method: "POST"\n          path: "/v1/request-landing"',
        '        - method: "GET"')
    applied = await policies.Apply(policy_pb2.ApplyPoliciesRequest(yaml=subset))
    assert list(applied.affected_identities) == [deathstar]
    assert entries_at(applied.revision) is None
