"""`bulkhead policy ...` as an operator runs it, against a real replica."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest

from bulkhead.v1 import endpoint_pb2, endpoint_pb2_grpc, node_pb2, node_pb2_grpc
from nodeagent.subscription.client import SubscriptionClient
from tests.conftest import Replica, ReplicaFactory
from tests.test_cli import bulkhead
from tests.test_policy_api import CLUSTERWIDE, NS, SEED

pytestmark = pytest.mark.timeout(90)
DEATHSTAR = f"k8s:org=empire,k8s:class=deathstar,{NS}"


async def endpoint(replica: Replica, node: str, name: str, labels: str) -> int:
    made = await endpoint_pb2_grpc.EndpointServiceStub(replica.channel()).Create(
        endpoint_pb2.CreateEndpointRequest(name=name, node=node, labels=labels.split(",")))
    return int(made.identity)


async def test_apply_list_get_resolve_trace_delete(replicas: ReplicaFactory,
                                                   tmp_path: Path) -> None:
    replica = await replicas()
    await node_pb2_grpc.NodeServiceStub(replica.channel()).Register(
        node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    deathstar = await endpoint(replica, "n1", "deathstar", DEATHSTAR)
    tie = await endpoint(replica, "n1", "tiefighter", f"k8s:org=empire,k8s:class=tiefighter,{NS}")
    path = tmp_path / "policies.yaml"
    path.write_text(SEED + "---\n" + CLUSTERWIDE)
    # --wait with an agent on n1: converges on the node hosting the affected identity.
    agent = SubscriptionClient("n1", [replica.address], register=False, backoff=(0.1, 1.0))
    task = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.synced.wait(), 20)
        rc, out, err = await bulkhead(replica.address, "policy", "apply", "-f", str(path),
                                      "--wait", "--timeout", "20", "-o", "json")
        # A revision that concerns no endpoint of n1: n1 converges without acking it, and
        # the wait says so (`covered`) rather than calling it applied there.
        elsewhere = tmp_path / "elsewhere.yaml"
        elsewhere.write_text(SEED.replace("rule1", "elsewhere").replace("deathstar",
                                                                        "nowhere"))
        rc2, out2, err2 = await bulkhead(replica.address, "policy", "apply", "-f",
                                         str(elsewhere), "-o", "json")
        assert rc2 == 0, err2
        later = json.loads(out2)["revision"]
        rc2, text, err2 = await bulkhead(replica.address, "policy", "wait", "--revision",
                                         str(later), "--identity", str(deathstar))
        assert rc2 == 0, err2
        assert text.startswith(f"revision {later} applied on 1 node; covered, nothing up "
                               f"to revision {later} concerns them: n1 (acked "), text
        rc2, out2, err2 = await bulkhead(replica.address, "policy", "wait", "--revision",
                                         str(later), "--identity", str(deathstar), "-o", "json")
        covered = json.loads(out2)["covered"]
        assert [c["name"] for c in covered] == ["n1"] and covered[0]["acked_revision"] < later
        rc2, out2, err2 = await bulkhead(replica.address, "policy", "delete",
                                         "default/elsewhere")
        assert rc2 == 0, err2
        assert out2.endswith("; 0 identities affected)\n"), out2
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert rc == 0, err
    applied = json.loads(out)
    assert set(applied) == {"revision", "affected_identities", "policies", "wait"}
    assert applied["affected_identities"] == sorted({deathstar, tie})
    assert applied["wait"] == {"converged": True, "nodes": ["n1"], "pending": [],
                               "covered": []}
    assert [(p["namespace"], p["name"], p["action"]) for p in applied["policies"]] == [
        ("default", "rule1", "created"), ("", "no-world", "created")]
    assert set(applied["policies"][0]) == {"kind", "namespace", "name", "revision",
                                           "created_revision", "rules", "action"}
    rc, out, _ = await bulkhead(replica.address, "policy", "apply", "-f", str(path))
    assert rc == 0 and "ciliumnetworkpolicy default/rule1 unchanged" in out
    assert "; 0 identities affected" in out
    rc, out, _ = await bulkhead(replica.address, "policy", "list", "-o", "json")
    assert [(p["namespace"], p["name"], p["rules"]) for p in json.loads(out)] == [
        ("", "no-world", 1), ("default", "rule1", 1)]
    rc, out, _ = await bulkhead(replica.address, "policy", "get", "default/rule1")
    assert rc == 0 and out.startswith("apiVersion: cilium.io/v2\n") and "port: '80'" in out
    rc, out, _ = await bulkhead(replica.address, "policy", "resolve", "--identity",
                                str(deathstar), "-o", "json")
    resolved = json.loads(out)
    assert resolved["ingress_enforced"] and resolved["egress_enforced"]
    ingress = [e for e in resolved["entries"] if e["direction"] == "ingress"]
    assert [(e["peer"], e["protocol"], e["port_lo"], e["verdict"]) for e in ingress] == [
        (p, "TCP", 80, "allow") for p in sorted({deathstar, tie})]
    assert ingress[0]["origins"] == [{"policy": "default/rule1", "kind": "CiliumNetworkPolicy",
                                      "rule": "spec.ingress[0]"}]
    egress = [e for e in resolved["entries"] if e["direction"] == "egress"]
    assert {(e["peer"], e["verdict"]) for e in egress} >= {(2, "deny")}
    assert egress[0]["origins"][0]["policy"] == "no-world"
    rc, out, _ = await bulkhead(replica.address, "policy", "list", "--clusterwide")
    assert rc == 0 and "no-world" in out and "rule1" not in out
    rc, out, _ = await bulkhead(replica.address, "policy", "delete", "--clusterwide", "no-world",
                                "-o", "json")
    assert json.loads(out)["deleted"] == "no-world"
    rc, out, _ = await bulkhead(replica.address, "policy", "trace", "--src",
                                f"k8s:org=empire,k8s:class=tiefighter,{NS}", "--dst",
                                DEATHSTAR, "--dport", "80/TCP", "-o", "json")
    traced = json.loads(out)
    assert traced["verdict"] == "ALLOWED"
    assert traced["ingress"] == {"verdict": "ALLOWED", "enforced": True,
                                 "reason": "default/rule1 spec.ingress[0]",
                                 "policy": "default/rule1", "rule": "spec.ingress[0]",
                                 "enforced_by": ["default/rule1"]}
    assert traced["egress"]["enforced_by"] == []
    rc, out, _ = await bulkhead(replica.address, "policy", "trace", "--src",
                                f"k8s:org=alliance,k8s:class=xwing,{NS}", "--dst", DEATHSTAR,
                                "--dport", "80/tcp")
    assert rc == 0 and out.startswith("DENIED")
    # The default deny names the policy that put the deathstar's ingress under enforcement.
    assert "  ingress  DENIED   default-deny (enforced by default/rule1)\n" in out, out
    # ICMP: the "port" is the type (8, echo request); rule1 allows TCP 80 only.
    rc, out, _ = await bulkhead(replica.address, "policy", "trace", "--src",
                                f"k8s:org=empire,k8s:class=tiefighter,{NS}", "--dst",
                                DEATHSTAR, "--dport", "8/ICMP")
    assert rc == 0 and out.startswith("DENIED"), out
    rc, _, err = await bulkhead(replica.address, "policy", "get", "--clusterwide", "no-world")
    assert rc == 1 and "NOT_FOUND" in err and "no-world (clusterwide)" in err


async def test_errors_and_wait_timeout(replicas: ReplicaFactory, tmp_path: Path) -> None:
    replica = await replicas()
    bad = tmp_path / "bad.yaml"
    bad.write_text(SEED + "---\n" + SEED.replace("rule1", "rule2").replace('"80"', "0")
                   + "---\n" + SEED.replace("rule1", "rule3").replace("fromEndpoints",
                                                                      "fromNodes"))
    rc, out, err = await bulkhead(replica.address, "policy", "apply", "-f", str(bad))
    assert rc == 1 and out == ""
    assert "INVALID_ARGUMENT" in err
    assert "documents[1].spec.ingress[0].toPorts[0].ports[0].port: must be 1-65535" in err
    assert ("documents[2].spec.ingress[0].fromNodes: is supported only in host policies "
            "(nodeSelector)") in err
    rc, _, err = await bulkhead(replica.address, "policy", "get", "rule1")
    assert rc == 2 and "NAMESPACE/NAME" in err
    # A node hosting the affected identity with no agent: --wait names it and fails.
    await node_pb2_grpc.NodeServiceStub(replica.channel()).Register(
        node_pb2.RegisterNodeRequest(name="silent", underlay_ip="192.0.2.9"))
    await endpoint(replica, "silent", "deathstar", DEATHSTAR)
    good = tmp_path / "good.yaml"
    good.write_text(SEED)
    rc, out, err = await bulkhead(replica.address, "policy", "apply", "-f", str(good),
                                  "--wait", "--timeout", "0.5")
    assert rc == 1 and "default/rule1 created" in out
    assert "did not apply revision" in err and "silent" in err
    assert "; 1 identity affected\n" in out and "1 of 1 node did not apply" in err
    # The same wait as JSON: one rule for numbers (README, "JSON output"): every revision
    # and counter is a JSON number, as in `node list -o json`.
    revision = int(out.split("revision ")[1].split(";")[0])
    rc, out, _ = await bulkhead(replica.address, "policy", "wait", "--revision", str(revision),
                                "--identity", str(await endpoint(replica, "silent", "deathstar2",
                                                                 DEATHSTAR)),
                                "--timeout", "0.5", "-o", "json")
    waited = json.loads(out)
    assert rc == 1 and waited["converged"] is False and waited["nodes"] == ["silent"]
    pending = waited["pending"][0]
    assert pending["name"] == "silent"
    for key in ("acked_revision", "lag_revisions", "resumes", "snapshots"):
        assert type(pending[key]) is int, (key, pending)
    rc, out, _ = await bulkhead(replica.address, "node", "list", "-o", "json")
    assert type(json.loads(out)[0]["acked_revision"]) is int
