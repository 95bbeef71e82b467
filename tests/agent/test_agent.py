"""bulkhead-agent --datapath bpf as processes: two nodes, a control plane, pods through the
local API; connectivity, policy from the control plane, flows, bad input, SIGKILL restart."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from bulkhead.rpcerror import field_violations
from bulkhead.v1 import (
    agent_pb2,
    flow_pb2,
    policy_pb2,
    policy_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
)
from integration.lab.story import POLICY
from tests.agent.cluster import BIN, Cluster, Pod, curl, probe

pytestmark = pytest.mark.datapath

EMPIRE = ["k8s:org=empire"]
RULE1 = POLICY.read_text()  # the seed's rule1, as `make run` applies it


def cli(lab: Cluster, short: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "bulkhead"), "agent", "--agent-socket", str(lab.nodes[short].socket), *args],
        capture_output=True, text=True, timeout=30)


def flows(lab: Cluster, short: str, last: int = 200, wait: float = 2.0,
          **filt: Any) -> list[flow_pb2.Flow]:
    """The newest matching flows held by an agent, waiting up to ``wait`` for at least one
    (the agent reads its ring buffer every 50 ms)."""
    request = flow_pb2.GetFlowsRequest(last=last, filter=flow_pb2.FlowFilter(**filt))
    deadline = time.monotonic() + wait
    while True:
        got = list(lab.agent(short).GetFlows(request, timeout=10))
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def apply_rule1(lab: Cluster) -> None:
    """Through the control plane's PolicyService, then wait until every node enforces it.
    Applying it again is harmless (unchanged), so each test that relies on it calls this."""
    with grpc.insecure_channel(lab.cp_address) as channel:
        applied = policy_pb2_grpc.PolicyServiceStub(channel).Apply(
            policy_pb2.ApplyPoliciesRequest(yaml=RULE1), timeout=30)
        waited = subscription_pb2_grpc.SubscriptionAdminServiceStub(channel).WaitForRevision(
            subscription_pb2.WaitForRevisionRequest(revision=applied.revision, timeout_seconds=20),
            timeout=30)
        assert waited.converged, waited


@pytest.fixture(scope="module")
def pods(lab: Cluster) -> dict[str, Pod]:
    lab.add_pod("deathstar-1", "n1", [*EMPIRE, "k8s:class=deathstar"], serve=True)
    lab.add_pod("deathstar-2", "n2", [*EMPIRE, "k8s:class=deathstar"], serve=True)
    lab.add_pod("tiefighter", "n1", [*EMPIRE, "k8s:class=tiefighter"])
    lab.add_pod("xwing", "n1", ["k8s:org=alliance", "k8s:class=xwing"])
    return lab.pods


def test_no_policy_tcp_udp_same_and_cross_node(lab: Cluster, pods: dict[str, Pod]) -> None:
    d1, d2, tie, xwing = (pods[n] for n in ("deathstar-1", "deathstar-2", "tiefighter", "xwing"))
    for client in (tie, xwing):
        assert curl(client, d1.ip, 80) == 0, f"{client.name} -> same node"
        assert curl(client, d2.ip, 80) == 0, f"{client.name} -> other node"
    assert probe(xwing, "udp", d2.ip, 5353) == "ok"
    listed = lab.agent("n1").ListEndpoints(agent_pb2.ListAgentEndpointsRequest()).endpoints
    assert {(e.namespace, e.name) for e in listed} == {
        ("default", "deathstar-1"), ("default", "tiefighter"), ("default", "xwing")}
    assert all(e.status == "ready" and not e.ingress_enforced and not e.egress_enforced
               for e in listed)
    assert len({e.host_ifname for e in listed}) == 3
    assert all(len(e.host_ifname) <= 15 for e in listed)


def test_maps_and_cli(lab: Cluster, pods: dict[str, Pod]) -> None:
    d2 = pods["deathstar-2"]
    n2_ip = lab.nodes["n2"].underlay_ip
    out = cli(lab, "n1", "bpf", "ipcache", "list", "-o", "json")
    assert out.returncode == 0, out.stderr
    # JSON of a dump: snake_case keys, typed values, sorted keys (README).
    assert list(json.loads(out.stdout)[0]) == ["identity", "prefix", "tunnel_endpoint"]
    rows = {r["prefix"]: r for r in json.loads(out.stdout)}
    assert rows[f"{d2.ip}/32"]["tunnel_endpoint"] == n2_ip  # other node's pod: tunnelled
    assert rows[f"{d2.ip}/32"]["identity"] == d2.identity
    assert rows[f"{pods['tiefighter'].ip}/32"]["tunnel_endpoint"] == "0.0.0.0"  # local
    assert rows[f"{n2_ip}/32"]["identity"] == 6  # remote-node
    assert rows[f"{lab.nodes['n1'].underlay_ip}/32"]["identity"] == 1  # host
    eps = json.loads(cli(lab, "n1", "bpf", "endpoint", "list", "-o", "json").stdout)
    assert {type(e["endpoint_id"]) for e in eps} == {int}
    assert {e["ingress_enforced"] for e in eps} == {False}
    tunnels = cli(lab, "n1", "bpf", "tunnel", "list")
    assert tunnels.returncode == 0 and d2.ip in tunnels.stdout and n2_ip in tunnels.stdout
    table = cli(lab, "n1", "endpoint", "list")
    assert table.returncode == 0 and "default/deathstar-1" in table.stdout
    assert "Disabled" in table.stdout and "ready" in table.stdout
    for args in (("bpf", "endpoint", "list"), ("bpf", "ct", "list"), ("status",),
                 ("bpf", "policy", "get", "default/deathstar-1")):
        got = cli(lab, "n1", *args)
        assert got.returncode == 0, (args, got.stderr)
    lb = cli(lab, "n1", "bpf", "lb", "list")  # no service applied: the empty service maps
    assert lb.returncode == 0 and "No entries found (lb map, capacity 65536)" in lb.stdout
    lb_json = cli(lab, "n1", "bpf", "lb", "list", "-o", "json")
    assert lb_json.returncode == 0 and json.loads(lb_json.stdout) == []
    missing = subprocess.run([str(BIN / "bulkhead"), "agent", "--agent-socket",
                              str(lab.tmp / "absent.sock"), "status"],
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode != 0 and "no agent socket" in missing.stderr


def test_bad_input_leaves_nothing_behind(lab: Cluster, pods: dict[str, Pod]) -> None:
    stub = lab.agent("n1")
    before_cp = lab.cp_endpoints()
    before_eps = stub.DumpMap(agent_pb2.DumpMapRequest(map="endpoints")).rows
    before_links = _links(lab, "n1")
    ns = lab.make_ns("bad")

    def add(**kw: object) -> grpc.RpcError:
        request = {"netns_path": f"/var/run/netns/{ns}", "name": "bad", "labels": EMPIRE, **kw}
        with pytest.raises(grpc.RpcError) as info:
            stub.AddEndpoint(agent_pb2.AddEndpointRequest(**request), timeout=30)  # type: ignore[arg-type]
        return info.value

    err = add(netns_path="/var/run/netns/does-not-exist")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(err)] == ["netns_path"]
    err = add(labels=["k8s:=novalue", "k8s:bad key=x"])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and field_violations(err), err
    err = add(name="tiefighter")  # the name exists on this node with another netns
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    err = add(name="deathstar-2")  # the name exists on the other node
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    err = add(netns_path=pods["xwing"].netns_path, name="other")  # netns already used
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS

    assert lab.cp_endpoints() == before_cp
    assert stub.DumpMap(agent_pb2.DumpMapRequest(map="endpoints")).rows == before_eps
    assert _links(lab, "n1") == before_links
    with pytest.raises(grpc.RpcError) as info:
        stub.DeleteEndpoint(agent_pb2.DeleteAgentEndpointRequest(namespace="default",
                                                                 name="bad"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def _links(lab: Cluster, short: str) -> set[str]:
    out = subprocess.run(["ip", "-n", lab.nodes[short].ns, "-o", "link"], capture_output=True,
                         text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def test_flows_have_verdicts_and_identities(lab: Cluster, pods: dict[str, Pod]) -> None:
    tie, d1 = pods["tiefighter"], pods["deathstar-1"]
    since = time.time_ns()
    assert curl(tie, d1.ip, 80) == 0
    got = flows(lab, "n1", from_identity=tie.identity, to_ip=d1.ip, port=80, since_ns=since)
    assert got, "no flow for tiefighter -> deathstar-1"
    f = got[-1]
    assert f.verdict == "FORWARDED" and f.protocol == "TCP" and "SYN" in f.tcp_flags
    assert (f.source.namespace, f.source.pod) == ("default", "tiefighter")
    assert (f.destination.pod, f.destination.port) == ("deathstar-1", 80)
    assert "k8s:class=tiefighter" in f.source.labels
    assert abs(f.time_ns / 1e9 - time.time()) < 60
    # No policy anywhere: nothing decided, on either side of this same-node connection.
    assert {(x.direction, x.policy_match) for x in got} == {("egress", False),
                                                           ("ingress", False)}
    seqs = [x.sequence for x in flows(lab, "n1")]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    out = cli(lab, "n1", "flows", "--last", "5", "-o", "json")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 5


def test_policy_from_the_control_plane(lab: Cluster, pods: dict[str, Pod]) -> None:
    apply_rule1(lab)
    d1, d2, tie, xwing = (pods[n] for n in ("deathstar-1", "deathstar-2", "tiefighter", "xwing"))
    assert curl(tie, d1.ip, 80) == 0 and curl(tie, d2.ip, 80) == 0
    assert curl(xwing, d1.ip, 80) == 28 and curl(xwing, d2.ip, 80) == 28
    assert probe(tie, "tcp", d2.ip, 81, timeout=0.5) == "timeout"
    listed = {e.name: e for e in
              lab.agent("n1").ListEndpoints(agent_pb2.ListAgentEndpointsRequest()).endpoints}
    assert listed["deathstar-1"].ingress_enforced and not listed["tiefighter"].ingress_enforced
    dropped = flows(lab, "n1", verdict="DROPPED", from_identity=xwing.identity, to_ip=d1.ip)
    assert dropped and dropped[-1].drop_reason == "Policy denied"
    assert dropped[-1].destination.pod == "deathstar-1"
    assert not dropped[-1].policy_match  # a default deny: no rule decided
    # rule1 allowed the deathstar's ingress (L3-L4); the tiefighter's egress is not enforced.
    since = time.time_ns()
    assert curl(tie, d1.ip, 80) == 0
    allowed = flows(lab, "n1", verdict="FORWARDED", from_identity=tie.identity, to_ip=d1.ip,
                    port=80, since_ns=since)
    assert {(x.direction, x.policy_match) for x in allowed} == {("egress", False),
                                                               ("ingress", True)}
    lines = cli(lab, "n1", "flows", "--last", "2", "--from-identity", str(tie.identity),
                "--port", "80").stdout.splitlines()
    assert any("policy-verdict:L3-L4 INGRESS FORWARDED" in x for x in lines), lines
    assert any("policy-verdict:none EGRESS FORWARDED" in x for x in lines), lines


def test_new_identity_on_node2_enforced_on_node1(lab: Cluster, pods: dict[str, Pod]) -> None:
    d1 = pods["deathstar-1"]
    apply_rule1(lab)
    assert _policy_applied(lab, d1)
    bomber = lab.add_pod("bomber", "n2", [*EMPIRE, "k8s:class=bomber"])
    assert bomber.identity not in {p.identity for p in pods.values() if p is not bomber}
    assert curl(bomber, d1.ip, 80) == 0  # allowed by org=empire, though new
    ywing = lab.add_pod("ywing", "n2", ["k8s:org=alliance", "k8s:class=ywing"])
    assert curl(ywing, d1.ip, 80) == 28


def _policy_applied(lab: Cluster, d1: Pod) -> bool:
    got = lab.agent("n1").ListEndpoints(agent_pb2.ListAgentEndpointsRequest()).endpoints
    return any(e.name == d1.name and e.ingress_enforced for e in got)


def test_sigkill_keeps_enforcing_and_restart_rewrites_nothing(
        lab: Cluster, pods: dict[str, Pod]) -> None:
    d1, d2, tie, xwing = (pods[n] for n in ("deathstar-1", "deathstar-2", "tiefighter", "xwing"))
    apply_rule1(lab)
    enforced = _policy_applied(lab, d1)
    assert enforced  # the denied probes below must be denied by policy, not by chance
    allowed: list[str] = []
    denied: list[str] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            allowed.append(probe(tie, "tcp", d1.ip, 80, timeout=1.0))
            allowed.append(probe(tie, "tcp", d2.ip, 80, timeout=1.0))
            denied.append(probe(xwing, "tcp", d1.ip, 80, timeout=0.3))

    before = lab.agent("n1").ListEndpoints(agent_pb2.ListAgentEndpointsRequest()).endpoints
    thread = threading.Thread(target=loop)
    thread.start()
    try:
        time.sleep(0.5)
        lab.kill_agent("n1")
        time.sleep(1.0)  # no agent at all: programs and pinned maps keep enforcing
        lab.start_agent("n1")
        status = lab.agent("n1").AgentStatus(agent_pb2.AgentStatusRequest())
        deadline = time.monotonic() + 10
        while any(e.status != "ready" for e in lab.agent("n1").ListEndpoints(
                agent_pb2.ListAgentEndpointsRequest()).endpoints):
            assert time.monotonic() < deadline, "restored endpoints never became ready"
            time.sleep(0.1)
        status = lab.agent("n1").AgentStatus(agent_pb2.AgentStatusRequest())
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
    assert set(allowed) == {"ok"}, allowed
    assert len(denied) >= 2
    assert set(denied) == ({"timeout"} if enforced else {"ok"}), denied
    assert dict(status.map_writes) == dict.fromkeys(status.map_writes, 0), status.map_writes
    after = lab.agent("n1").ListEndpoints(agent_pb2.ListAgentEndpointsRequest()).endpoints
    key = [(e.endpoint_id, e.namespace, e.name, e.identity, e.ipv4, e.host_ifname,
            e.ingress_enforced) for e in before]
    assert [(e.endpoint_id, e.namespace, e.name, e.identity, e.ipv4, e.host_ifname,
             e.ingress_enforced) for e in after] == key
    # The new agent's programs are attached: its ring buffer sees new verdicts.
    since = time.time_ns()
    assert curl(tie, d1.ip, 80) == 0
    fresh = flows(lab, "n1", from_identity=tie.identity, since_ns=since)
    assert fresh and fresh[-1].boot_id == status.boot_id


def test_delete_endpoint_undoes_everything(lab: Cluster, pods: dict[str, Pod]) -> None:
    stub = lab.agent("n1")
    ns = lab.make_ns("tmp")
    made = stub.AddEndpoint(agent_pb2.AddEndpointRequest(
        netns_path=f"/var/run/netns/{ns}", name="tmp", labels=EMPIRE), timeout=30)
    assert "default/tmp" in lab.cp_endpoints()
    assert made.host_ifname in _links(lab, "n1")
    stub.DeleteEndpoint(agent_pb2.DeleteAgentEndpointRequest(namespace="default", name="tmp"))
    assert "default/tmp" not in lab.cp_endpoints()
    assert made.host_ifname not in _links(lab, "n1")
    rows = stub.DumpMap(agent_pb2.DumpMapRequest(map="endpoints")).rows
    assert made.ipv4 not in {r.fields["IP ADDRESS"] for r in rows}
    assert not stub.DumpMap(agent_pb2.DumpMapRequest(map="policy",
                                                     endpoint=str(made.endpoint_id))).rows


def test_refuses_without_bpf_saying_what_is_missing(tmp_path: Path) -> None:
    """An unprivileged user has no BPF: the agent names what is missing and exits 2."""
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
         "nodeagent.main", "--node", "x", "--controlplane", "127.0.0.1:1", "--underlay-ip",
         "10.0.0.1", "--datapath", "bpf", "--socket", str(tmp_path / "s.sock")],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 2, out.stderr
    assert "root privileges" in out.stderr
