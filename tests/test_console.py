"""The web console's server (`bulkhead ui`) against a real replica: its JSON API as the page
uses it, and the map's grouping of flows. The page itself is driven in a real browser by
integration/test_console_browser.py."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bulkhead.v1 import flow_pb2, policy_pb2, policy_pb2_grpc
from cli.console import flowmap, yamlpaths
from cli.console.backend import Backend
from cli.console.errors import ApiError
from cli.console.flows import flow_json, observe_request
from cli.console.server import make_app
from integration.lab.story import POLICY
from tests.conftest import Replica, ReplicaFactory

pytestmark = pytest.mark.timeout(60)

NS = "k8s:io.kubernetes.pod.namespace=default"
XWING = ["k8s:app.kubernetes.io/name=xwing", "k8s:class=xwing", "k8s:org=alliance", NS]
TIE = ["k8s:app.kubernetes.io/name=tiefighter", "k8s:class=tiefighter", "k8s:org=empire", NS]
DEATH = ["k8s:app.kubernetes.io/name=deathstar", "k8s:class=deathstar", "k8s:org=empire", NS]


def flow(src: list[str], src_pod: str, verdict: str, direction: str, t: int,
         request: tuple[str, str] | None = None) -> dict[str, Any]:
    made = flow_pb2.Flow(
        time_ns=1_700_000_000_000_000_000 + t, node="n1", verdict=verdict,
        drop_reason="Policy denied (default deny)" if verdict == "DROPPED" else "",
        source=flow_pb2.FlowPeer(namespace="default", pod=src_pod, ip="10.0.1.5", port=40000 + t,
                                 identity=300, labels=src),
        destination=flow_pb2.FlowPeer(namespace="default", pod="deathstar-6f-abcde",
                                      ip="10.0.1.9", port=80, identity=400, labels=DEATH),
        protocol="TCP", tcp_flags=["SYN"], direction=direction, type="L3_L4")
    if request is not None:
        made.type = "L7"
        made.l7.type = "REQUEST"
        made.l7.http.method, path = request
        made.l7.http.url = f"http://deathstar.default.svc.cluster.local{path}"
        made.l7.http.protocol = "HTTP/1.1"
    return flow_json(made)


def test_the_map_groups_by_app_and_colours_an_edge_by_how_its_connections_ended() -> None:
    flows = [flow(XWING, "xwing", "FORWARDED", "egress", 1),  # the xwing's node let it out
             flow(XWING, "xwing", "DROPPED", "ingress", 2),   # the deathstar's node dropped it
             flow(TIE, "tiefighter", "FORWARDED", "egress", 3),
             flow(TIE, "tiefighter", "FORWARDED", "ingress", 4),
             flow(TIE, "tiefighter", "DROPPED", "ingress", 5, ("PUT", "/v1/exhaust-port")),
             flow(TIE, "tiefighter", "FORWARDED", "ingress", 6, ("POST", "/v1/request-landing"))]
    endpoints = [{"namespace": "default", "name": "deathstar-6f-abcde", "labels": DEATH},
                 {"namespace": "default", "name": "deathstar-6f-fghij", "labels": DEATH},
                 {"namespace": "other", "name": "idle", "labels": ["k8s:app=idle"]}]
    built = flowmap.build_map(flows, endpoints)
    groups = {g["id"]: g for g in built["groups"]}
    assert sorted(groups) == ["default/deathstar", "default/tiefighter", "default/xwing",
                              "other/idle"]
    assert len(groups["default/deathstar"]["pods"]) == 2
    edges = {e["id"]: e for e in built["edges"]}
    xwing = edges["default/xwing->default/deathstar"]
    assert (xwing["verdict"], xwing["forwarded"], xwing["dropped"]) == ("DROPPED", 1, 1)
    tie = edges["default/tiefighter->default/deathstar"]
    assert tie["verdict"] == "FORWARDED"  # its newest flow: the forwarded POST
    assert [(r["request"], r["forwarded"], r["dropped"]) for r in tie["l7"]] == [
        ("POST /v1/request-landing", 1, 0), ("PUT /v1/exhaust-port", 0, 1)]
    assert [f["time"] for f in tie["flows"]] == sorted((f["time"] for f in tie["flows"]),
                                                      reverse=True)
    assert built["namespaces"] == ["default", "other"]
    other = flowmap.build_map(flows, endpoints, "other")
    assert [g["id"] for g in other["groups"]] == ["other/idle"] and other["edges"] == []


def test_a_reserved_peer_is_its_own_group() -> None:
    assert flowmap.group_of("", ["reserved:world"], "1.1.1.1")["id"] == "world"
    assert flowmap.group_of("default", ["k8s:app=web", "k8s:class=front"], "p")["name"] == (
        "web (front)")
    assert flowmap.group_of("default", [], "lonely")["id"] == "default/lonely"


def test_a_problem_path_points_at_its_line() -> None:
    text = POLICY.read_text()
    line = yamlpaths.line_of(text, "spec.ingress[0].toPorts[0].ports[0].port")
    assert line is not None and 'port: "80"' in text.splitlines()[line - 1]
    two = f"{text}---\n{text}"
    second = yamlpaths.line_of(two, "documents[1].metadata.name")
    assert second is not None and second > len(text.splitlines())
    assert yamlpaths.line_of("a: [", "a") is None


@pytest.fixture
async def console(replicas: ReplicaFactory) -> AsyncIterator[tuple[TestClient[Any, Any],
                                                                   Backend, Replica]]:
    replica = await replicas()
    backend = Backend(replica.address, insecure=True)
    client = TestClient(TestServer(make_app(backend, follow_flows=False)))
    await client.start_server()
    try:
        yield client, backend, replica
    finally:
        await client.close()


async def test_the_editor_gets_every_problem_at_its_path_and_line(
        console: tuple[TestClient[Any, Any], Backend, Replica]) -> None:
    client, _, _ = console
    bad = POLICY.read_text().replace('port: "80"', 'port: "99999"')
    response = await client.post("/api/policies/validate", json={"yaml": bad})
    result = await response.json()
    assert result["ok"] is False
    [problem] = result["problems"]
    assert problem["field"] == "spec.ingress[0].toPorts[0].ports[0].port"
    assert problem["description"] == "must be 1-65535"
    assert '"99999"' in bad.splitlines()[problem["line"] - 1]
    good = await (await client.post("/api/policies/validate",
                                    json={"yaml": POLICY.read_text()})).json()
    assert good["ok"] and good["policies"][0]["name"] == "rule1"
    # validating stored nothing
    assert (await (await client.get("/api/policies")).json())["policies"] == []


async def test_what_if_and_impact_of_removing_rule1(
        console: tuple[TestClient[Any, Any], Backend, Replica]) -> None:
    client, backend, replica = console
    await policy_pb2_grpc.PolicyServiceStub(replica.channel()).Apply(
        policy_pb2.ApplyPoliciesRequest(yaml=POLICY.read_text()))
    question = {"src": ",".join(XWING), "dst": ",".join(DEATH), "port": "80/TCP"}
    now = await (await client.post("/api/whatif", json=question)).json()
    assert now["current"]["verdict"] == "DENIED" and now["proposed"] is None
    assert now["current"]["ingress"]["rule"] == "default-deny (enforced by default/rule1)"
    edited = await (await client.post("/api/whatif", json={
        **question, "remove": ["default/rule1"]})).json()
    assert edited["proposed"]["verdict"] == "ALLOWED"
    for f in (flow(XWING, "xwing", "FORWARDED", "egress", 1),
              flow(XWING, "xwing", "DROPPED", "ingress", 2),
              flow(XWING, "xwing", "DROPPED", "ingress", 3),
              flow(TIE, "tiefighter", "FORWARDED", "ingress", 4)):
        backend.flows.flows.append(f)
    impact = await (await client.post("/api/impact", json={"remove": ["default/rule1"]})).json()
    assert impact["flows_replayed"] == 4
    [changed] = impact["changed"]   # the xwing's dropped ingress, not its egress nor the tie
    assert (changed["source"], changed["destination"], changed["count"]) == (
        "default/xwing", "default/deathstar", 2)
    assert changed["current"] == {"verdict": "DENIED", "side": "ingress",
                                  "rule": "default-deny (enforced by default/rule1)"}
    assert changed["proposed"]["verdict"] == "ALLOWED"
    explained = await (await client.post("/api/flows/explain", json={
        "flows": list(backend.flows.flows)})).json()
    assert [d["rule"] for d in explained["decisions"]] == [
        "default-allow", "default-deny (enforced by default/rule1)",
        "default-deny (enforced by default/rule1)", "default/rule1 spec.ingress[0]"]
    # a flow recorded before rule1 (forwarded): today's rule did not decide it, and it says so
    before = await (await client.post("/api/flows/explain", json={
        "flows": [flow(XWING, "xwing", "FORWARDED", "ingress", 0)]})).json()
    assert before["decisions"][0]["rule"] == (
        "policies changed since; now DENIED: default-deny (enforced by default/rule1)")
    # nothing stored by either: rule1 is still there
    assert [p["name"] for p in (await (await client.get("/api/policies")).json())["policies"]] \
        == ["rule1"]


async def test_apply_and_delete_through_the_console(
        console: tuple[TestClient[Any, Any], Backend, Replica]) -> None:
    client, _, _ = console
    applied = await (await client.post("/api/apply", json={"yaml": POLICY.read_text()})).json()
    assert applied["actions"] == ["ciliumnetworkpolicy default/rule1 created"]
    assert applied["converged"] is True and applied["revision"] > 0
    shown = await (await client.get("/api/policies/default/rule1")).json()
    assert "class: deathstar" in shown["yaml"]
    removed = await (await client.post("/api/apply", json={"remove": ["default/rule1"]})).json()
    assert removed["actions"] == ["policy default/rule1 deleted"]
    missing = await client.get("/api/policies/default/rule1")
    assert missing.status == 404
    refused = await client.post("/api/apply", json={"yaml": "kind: Nope\n"})
    assert refused.status == 400 and (await refused.json())["problems"]


async def test_flow_filters_are_observes_and_checked(
        console: tuple[TestClient[Any, Any], Backend, Replica]) -> None:
    client, _, _ = console
    assert (await client.get("/api/flows/check?verdict=DROPPED&from-pod=default/xwing")
            ).status == 200
    bad = await client.get("/api/flows/check?verdict=LOST")
    assert bad.status == 400 and "--verdict" in (await bad.json())["error"]
    assert (await bad.json())["problems"][0]["field"] == "verdict"
    unknown = await client.get("/api/flows/check?colour=red")
    assert (await unknown.json())["problems"] == [{"field": "colour",
                                                   "description": "unknown filter"}]
    for query, field in (("from-ip=10.0.0.300", "from-ip"), ("to-ip=deathstar", "to-ip"),
                         ("from-identity=-1", "from-identity"), ("to-identity=x", "to-identity"),
                         ("since=yesterday", "since")):
        refused = await client.get(f"/api/flows/check?{query}")
        assert refused.status == 400
        assert [p["field"] for p in (await refused.json())["problems"]] == [field], query
    # a bad filter ends the stream before it starts, at its field too
    stream = await client.get("/api/flows/stream?from-ip=10.0.0.300")
    assert stream.status == 400
    assert (await stream.json())["problems"][0]["field"] == "from-ip"
    cluster = await (await client.get("/api/cluster")).json()
    assert cluster["status"]["cluster_name"] and cluster["nodes"] == []
    page = await client.get("/")
    assert page.status == 200 and "Bulkhead console" in await page.text()
    script = await client.get("/static/app.js")
    assert script.status == 200


def test_ip_identity_and_label_filters_are_observes() -> None:
    """The page's IP, identity and label fields become `observe`'s FlowFilter fields (labels
    repeated, addresses in the form flows carry them)."""
    request = observe_request([("from-ip", "10.0.1.5"), ("to-ip", "fd00:0:0::9"),
                               ("from-identity", "256"), ("to-identity", "257"),
                               ("from-label", "org=alliance"), ("from-label", "class=xwing"),
                               ("to-label", "class=deathstar")], follow=True)
    f = request.filter
    assert (f.from_ip, f.to_ip, f.from_identity, f.to_identity) == ("10.0.1.5", "fd00::9",
                                                                    256, 257)
    assert list(f.from_labels) == ["org=alliance", "class=xwing"]
    assert list(f.to_labels) == ["class=deathstar"] and request.follow


def test_a_bad_filter_names_its_field() -> None:
    with pytest.raises(ApiError) as refused:
        observe_request([("from-ip", "10.0.0.300")], follow=True)
    assert refused.value.problems == [{
        "field": "from-ip", "description": "expected an IPv4 or IPv6 address, got '10.0.0.300'"}]
    assert refused.value.message.startswith("--from-ip: ")


async def test_bulkhead_ui_serves_the_console_and_says_where(replicas: ReplicaFactory) -> None:
    """The command as a user runs it: its URL on stdout, the console talking to the control
    plane named by --server (the CLI's own discovery)."""
    replica = await replicas()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", "--server", replica.address, "--insecure", "ui",
        "--listen", "127.0.0.1:0", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        match = re.match(r"bulkhead console: (http://127\.0\.0\.1:\d+/) \(control plane (.+)\)",
                         line)
        assert match, line
        assert match.group(2) == replica.address
        async with aiohttp.ClientSession() as session:
            async with session.get(match.group(1) + "api/cluster") as response:
                assert response.status == 200
                cluster = await response.json()
        assert cluster["status"]["replica_id"] == replica.cp.config.replica_id
    finally:
        process.terminate()
        await process.wait()


async def test_bulkhead_ui_refuses_a_bad_listen_address() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", "ui", "--listen", "nowhere",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert err.decode().strip() == "bulkhead: --listen: expected HOST:PORT, got 'nowhere'"


async def test_live_views_are_server_sent_events(
        console: tuple[TestClient[Any, Any], Backend, Replica]) -> None:
    client, backend, _ = console
    backend.flows.flows.append(flow(XWING, "xwing", "DROPPED", "ingress", 1))
    events = {}
    for path in ("/api/map/stream", "/api/cluster/stream"):
        response = await client.get(path)
        assert response.headers["Content-Type"] == "text/event-stream"
        line = await asyncio.wait_for(response.content.readline(), 30)
        assert line.startswith(b"data: ")
        events[path] = json.loads(line[len(b"data: "):])
        response.close()
    assert [(e["id"], e["verdict"]) for e in events["/api/map/stream"]["edges"]] == [
        ("default/xwing->default/deathstar", "DROPPED")]
    assert events["/api/cluster/stream"]["nodes"] == []
