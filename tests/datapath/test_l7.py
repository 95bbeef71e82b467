"""L7 HTTP on the real kernel: the tc redirect (bpf_sk_assign) and the node's proxy process.

The datapath gets L7 policy entries directly (proxy port in the policy map) and each node's
proxy its rules directly, through the same control channel the agent uses.  Clients and
servers are real HTTP programs in the pods' namespaces.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bulkhead.httprules import HeaderMatch, HttpRule, Mismatch, to_proto
from bulkhead.v1 import subscription_pb2 as pb
from nodeagent import dumps
from nodeagent.datapath import Backend, PolicyEntry, ServiceFrontend
from nodeagent.datapath.layout import Direction, Reason
from nodeagent.endpoints import EndpointTable, LocalEndpoint
from nodeagent.proxy.rules import EGRESS, INGRESS, L7Entry
from nodeagent.proxy.supervisor import ProxySupervisor
from nodeagent.reconciler import Reconciler
from nodeagent.subscription.state import ReceivedState
from nodeagent.worker import Worker
from tests.datapath.topology import DEATHSTAR, TIEFIGHTER, XWING, Cluster, Pod

HERE = Path(__file__).resolve().parent
PORT = 8000
PROXY_PORT = 15001
LANDING = (HttpRule(method="POST", path="/v1/request-landing"),)


@pytest.fixture(scope="module")
def l7(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """HTTP servers in both deathstars and a proxy per node (stopped at the end)."""
    servers = []
    proxies: dict[str, ProxySupervisor] = {}
    tmp = tmp_path_factory.mktemp("l7")
    try:
        for name in ("deathstar1", "deathstar2"):
            pod = cluster.pods[name]
            proc = subprocess.Popen(
                ["ip", "netns", "exec", pod.ns, sys.executable, str(HERE / "httpserve.py"),
                 name, str(PORT)], stdout=subprocess.PIPE, text=True)
            servers.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for short, node in cluster.nodes.items():
            sup = ProxySupervisor(tmp / f"proxy-{short}.sock", netns=node.ns, port=PROXY_PORT)
            proxies[short] = sup
            sup.start()
        yield proxies
    finally:
        for sup in proxies.values():
            sup.stop()
        for proc in servers:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture
def proxies(l7: dict[str, ProxySupervisor], clean_policy: Cluster
            ) -> Iterator[dict[str, ProxySupervisor]]:
    for sup in l7.values():
        sup.ensure()
        sup.set_entries([])
        sup.flows()
    yield l7
    for sup in l7.values():
        sup.set_entries([])


def client(pod: Pod, ip: str, *args: str, timeout: float = 60) -> list[Any]:
    out = subprocess.run(
        ["ip", "netns", "exec", pod.ns, sys.executable, str(HERE / "httpclient.py"), ip,
         str(PORT), *args], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    result: list[Any] = json.loads(out.stdout)
    return result


def redirect(c: Cluster, pod: Pod, direction: Direction, peer: int,
             proxy_port: int = PROXY_PORT) -> None:
    """One L7 entry (TCP PORT, the proxy port) on ``pod``, that direction enforced."""
    entry = PolicyEntry(direction, peer, 6, PORT, PORT, proxy_port=proxy_port)
    c.dp(pod.node).sync_policy(pod.ep_id, [entry], ingress_enforced=direction == Direction.INGRESS,
                               egress_enforced=direction == Direction.EGRESS)


def setup_l7(c: Cluster, proxies: dict[str, ProxySupervisor], direction: str, client_pod: Pod,
             server_pod: Pod, rules: tuple[HttpRule, ...] | None = LANDING) -> ProxySupervisor:
    """Rules in the proxy of the node that redirects, then the redirect itself."""
    if direction == INGRESS:
        owner, peer, d = server_pod, client_pod.identity, Direction.INGRESS
    else:
        owner, peer, d = client_pod, server_pod.identity, Direction.EGRESS
    sup = proxies[owner.node]
    sup.set_entries([L7Entry(owner.ip, direction, peer, PORT, PORT, rules)])
    redirect(c, owner, d, peer)
    return sup


CASES = [
    (INGRESS, "deathstar1"),  # same node
    (INGRESS, "deathstar2"),  # across nodes
    (EGRESS, "deathstar1"),
    (EGRESS, "deathstar2"),
]


@pytest.mark.parametrize(("direction", "server"), CASES)
def test_allowed_and_denied_on_one_keepalive_connection(
        proxies: dict[str, ProxySupervisor], clean_policy: Cluster, direction: str,
        server: str) -> None:
    c = clean_policy
    tf, ds = c.pods["tiefighter"], c.pods[server]
    sup = setup_l7(c, proxies, direction, tf, ds)
    got = client(tf, ds.ip, "seq", "POST /v1/request-landing", "PUT /v1/exhaust-port",
                 "POST /v1/request-landing1", "GET /v1/request-landing",
                 "POST /v1/request-landing|Host: deathstar.default.svc.cluster.local")
    assert got[0] == [200, f"{server} POST /v1/request-landing from {tf.ip} bytes=0 headers=\n"]
    assert got[1:4] == [[403, "Access denied"]] * 3
    assert got[4][0] == 200
    flows = sup.flows()
    assert {tuple(f["src"]) for f in flows} == {(tf.ip, flows[0]["src"][1])}, \
        "every request went over the one client connection"
    requests = [(f["verdict"], f["http"]["method"], f["http"]["url"])
                for f in flows if f["type"] == "request"]
    assert requests == [
        ("FORWARDED", "POST", f"http://{ds.ip}:{PORT}/v1/request-landing"),
        ("DROPPED", "PUT", f"http://{ds.ip}:{PORT}/v1/exhaust-port"),
        ("DROPPED", "POST", f"http://{ds.ip}:{PORT}/v1/request-landing1"),
        ("DROPPED", "GET", f"http://{ds.ip}:{PORT}/v1/request-landing"),
        ("FORWARDED", "POST", "http://deathstar.default.svc.cluster.local/v1/request-landing"),
    ]
    responses = [f for f in flows if f["type"] == "response"]
    assert [f["http"]["code"] for f in responses] == [200, 200]
    assert all(f["latency_ns"] > 0 for f in responses)
    assert all(f["peer"] == (TIEFIGHTER if direction == INGRESS else DEATHSTAR) for f in flows)


def test_pipelined_pair(proxies: dict[str, ProxySupervisor], clean_policy: Cluster) -> None:
    c = clean_policy
    tf, ds = c.pods["tiefighter"], c.pods["deathstar2"]
    setup_l7(c, proxies, INGRESS, tf, ds)
    got = client(tf, ds.ip, "pipeline", "PUT /v1/exhaust-port", "POST /v1/request-landing",
                 "PUT /v1/exhaust-port")
    assert [g[0] for g in got] == [403, 200, 403]
    assert got[1][1].startswith("deathstar2 POST /v1/request-landing")
    many = client(tf, ds.ip, "pipeline",
                  *["PUT /v1/exhaust-port", "POST /v1/request-landing"] * 100)
    assert [g[0] for g in many] == [403, 200] * 100, "answers in order, past the pipeline bound"
    nat = {(e.saddr, e.daddr, e.dport, e.nat) for e in c.dp(ds.node).ct()}
    assert (tf.ip, ds.ip, PORT, f"to proxy :{PROXY_PORT}") in nat  # the client's connection
    assert (tf.ip, ds.ip, PORT, "proxy upstream") in nat  # the proxy's, from the client's IP


def test_empty_rule_and_header_edits(proxies: dict[str, ProxySupervisor],
                                     clean_policy: Cluster) -> None:
    c = clean_policy
    tf, ds = c.pods["tiefighter"], c.pods["deathstar1"]
    setup_l7(c, proxies, INGRESS, tf, ds, (HttpRule(),))
    assert [g[0] for g in client(tf, ds.ip, "seq", "PUT /v1/exhaust-port", "GET /")] == [200, 200]
    rule = HttpRule(method="GET", header_matches=(HeaderMatch("X-Landing", "granted",
                                                              Mismatch.REPLACE),))
    setup_l7(c, proxies, INGRESS, tf, ds, (rule, HttpRule(headers=("X-Token: 42",))))
    got = client(tf, ds.ip, "seq", "GET /a|X-Landing: denied", "PUT /b|X-Token: 42",
                 "PUT /c|X-Token: 41")
    assert got[0][0] == 200 and "headers=x-landing:granted" in got[0][1]
    assert got[1][0] == 200 and got[2] == [403, "Access denied"]


def test_chunked_upload_is_streamed(proxies: dict[str, ProxySupervisor],
                                    clean_policy: Cluster) -> None:
    c = clean_policy
    tf, ds = c.pods["tiefighter"], c.pods["deathstar2"]
    sup = setup_l7(c, proxies, EGRESS, tf, ds, (HttpRule(method="POST", path="/upload"),))
    client(tf, ds.ip, "seq", "POST /upload")  # the proxy's steady state before measuring
    before = peak_rss_kib(sup.pid())
    got = client(tf, ds.ip, "upload", "/upload", "50", timeout=120)
    assert got == [[200, f"deathstar2 POST /upload from {tf.ip} bytes={50 << 20} headers=\n"]]
    grown = peak_rss_kib(sup.pid()) - before
    assert grown < 8 * 1024, f"the proxy's peak memory grew by {grown} KiB for 50 MiB"


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_garbage_closes_with_a_dropped_flow(proxies: dict[str, ProxySupervisor],
                                           clean_policy: Cluster) -> None:
    c = clean_policy
    tf, ds = c.pods["tiefighter"], c.pods["deathstar1"]
    sup = setup_l7(c, proxies, INGRESS, tf, ds)
    assert client(tf, ds.ip, "garbage")[0][0] in ("closed", "reset")
    flows = sup.flows()
    assert [(f["type"], f["verdict"]) for f in flows] == [("request", "DROPPED")]
    assert flows[0]["summary"].startswith("not HTTP/1.x")
    assert sup.stats()["not_http"] >= 1


def test_rules_change_for_the_next_request_of_a_live_connection(
        proxies: dict[str, ProxySupervisor], clean_policy: Cluster) -> None:
    c = clean_policy
    tf, ds = c.pods["tiefighter"], c.pods["deathstar1"]
    sup = setup_l7(c, proxies, INGRESS, tf, ds)
    proc = subprocess.Popen(
        ["ip", "netns", "exec", tf.ns, sys.executable, str(HERE / "httpclient.py"), ds.ip,
         str(PORT), "seq", "PUT /v1/exhaust-port", "WAIT", "PUT /v1/exhaust-port"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None and proc.stdin is not None
    assert proc.stderr.readline().strip() == "waiting"
    sup.set_entries([L7Entry(ds.ip, INGRESS, TIEFIGHTER, PORT, PORT,
                             (HttpRule(method="PUT"),))])
    out, _ = proc.communicate("\n", timeout=30)
    got = json.loads(out)
    assert got[0] == [403, "Access denied"]
    assert got[1][0] == 200
    assert len({f["src"][1] for f in sup.flows()}) == 1, "both requests on one connection"


def test_plain_forwarding_when_the_l7_entry_goes(proxies: dict[str, ProxySupervisor],
                                                 clean_policy: Cluster) -> None:
    c = clean_policy
    tf, ds = c.pods["tiefighter"], c.pods["deathstar2"]
    sup = setup_l7(c, proxies, INGRESS, tf, ds)
    assert client(tf, ds.ip, "seq", "PUT /v1/exhaust-port")[0][0] == 403
    redirect(c, ds, Direction.INGRESS, TIEFIGHTER, proxy_port=0)
    sup.flows()
    assert client(tf, ds.ip, "seq", "PUT /v1/exhaust-port")[0][0] == 200
    assert sup.flows() == []
    # an identity without any entry still gets nothing
    xw = c.pods["xwing"]
    assert client(xw, ds.ip, "seq", "POST /v1/request-landing", timeout=30)[0][0] == "error"
    assert XWING != TIEFIGHTER


def test_no_listener_fails_closed(proxies: dict[str, ProxySupervisor],
                                  clean_policy: Cluster) -> None:
    """An L7 entry whose proxy port has no listener: the connection fails, nothing reaches
    the server (the same holds while a proxy is down)."""
    c = clean_policy
    tf, ds = c.pods["tiefighter"], c.pods["deathstar1"]
    setup_l7(c, proxies, INGRESS, tf, ds)
    redirect(c, ds, Direction.INGRESS, TIEFIGHTER, proxy_port=PROXY_PORT + 1)
    c.dp(ds.node).read_flows()
    got = client(tf, ds.ip, "seq", "PUT /v1/exhaust-port", "POST /v1/request-landing")
    assert [g[0] for g in got] == ["error", "error"]
    drops = [f for f in c.dp(ds.node).read_flows() if f.reason == Reason.PROXY_UNAVAILABLE]
    assert drops and all(f.saddr == tf.ip and f.dport == PORT for f in drops)


def test_killed_proxy_never_lets_a_denied_request_through(
        proxies: dict[str, ProxySupervisor], clean_policy: Cluster) -> None:
    c = clean_policy
    tf, ds = c.pods["tiefighter"], c.pods["deathstar2"]
    sup = setup_l7(c, proxies, INGRESS, tf, ds)
    loop = subprocess.Popen(
        ["ip", "netns", "exec", tf.ns, sys.executable, str(HERE / "httpclient.py"), ds.ip,
         str(PORT), "loop", "6", "POST /v1/request-landing", "PUT /v1/exhaust-port"],
        stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)
    killed = sup.pid()
    os.kill(killed, signal.SIGKILL)
    time.sleep(1.5)
    assert sup.ensure(), "the supervisor restarts a dead proxy"
    assert sup.pid() != killed
    out, _ = loop.communicate(timeout=60)
    rounds = json.loads(out)
    puts = [r[1] for r in rounds]
    assert all(p[0] != 200 for p in puts), "a denied request got the server's answer"
    assert rounds[-1][0][0] == 200 and rounds[-1][1] == [403, "Access denied"]


def test_agent_reconciler_turns_an_l7_policy_into_redirect_and_rules(
        proxies: dict[str, ProxySupervisor], clean_policy: Cluster, tmp_path: Path) -> None:
    """The agent's path from a received IdentityPolicy with HTTP rules: the proxy gets the
    rules, the policy map the proxy port; then the traffic is checked request by request."""
    c = clean_policy
    tf, ds = c.pods["tiefighter"], c.pods["deathstar1"]
    state = ReceivedState()
    state.apply(pb.Change(policy=pb.IdentityPolicy(
        identity=DEATHSTAR, ingress_enforced=True, entries=[
            pb.PolicyEntry(direction=pb.PolicyEntry.INGRESS, peer=TIEFIGHTER, protocol=6,
                           port_lo=PORT, port_hi=PORT, l7=pb.PolicyEntry.HTTP,
                           http=[to_proto(r) for r in LANDING])])))
    table = EndpointTable(tmp_path / "endpoints.json")
    table.put(LocalEndpoint(ep_id=ds.ep_id, namespace="default", name="deathstar-1",
                            labels=[], identity=DEATHSTAR, ip=ds.ip,
                            host_ifname=ds.host_ifname))
    worker = Worker()
    try:
        reconciler = Reconciler(c.nodes["n1"].name, c.dp("n1"), worker, state, table,
                                proxies["n1"])
        ep = table.by_ip(ds.ip)
        assert ep is not None
        asyncio.run(reconciler.apply_endpoint(ep))
    finally:
        worker.shutdown()
    assert [k.proxy_port for k in c.dp("n1").policy(ds.ep_id)] == [PROXY_PORT]
    cols, rows, _ = dumps.policy(c.dp("n1"), ds.ep_id, lambda identity: [])
    assert cols[-1] == "PROXY PORT" and [r["PROXY PORT"] for r in rows] == [str(PROXY_PORT)]
    assert proxies["n1"].stats()["entries"] == 1
    got = client(tf, ds.ip, "seq", "POST /v1/request-landing", "PUT /v1/exhaust-port")
    assert [g[0] for g in got] == [200, 403]
    assert client(c.pods["xwing"], ds.ip, "seq", "POST /v1/request-landing",
                  timeout=30)[0][0] == "error"


def test_an_l3_deny_wins_before_any_proxying(proxies: dict[str, ProxySupervisor],
                                             clean_policy: Cluster) -> None:
    c = clean_policy
    tf, ds = c.pods["tiefighter"], c.pods["deathstar2"]
    sup = setup_l7(c, proxies, INGRESS, tf, ds, (HttpRule(),))
    c.dp(ds.node).sync_policy(ds.ep_id, [
        PolicyEntry(Direction.INGRESS, TIEFIGHTER, 6, PORT, PORT, proxy_port=PROXY_PORT),
        PolicyEntry(Direction.INGRESS, TIEFIGHTER, deny=True)], ingress_enforced=True,
        egress_enforced=False)
    assert client(tf, ds.ip, "seq", "GET /", timeout=30)[0][0] == "error"
    assert sup.flows() == [], "the denied connection never reached the proxy"


VIP = "10.96.0.77"


@pytest.mark.parametrize(("direction", "server"), CASES)
def test_through_a_clusterip(proxies: dict[str, ProxySupervisor], clean_policy: Cluster,
                             direction: str, server: str) -> None:
    """The demo's path: the client dials a ClusterIP, the backend's connection is proxied,
    and the proxy's answers reach the client from the ClusterIP (its socket would reset a
    reply from the backend's address)."""
    c = clean_policy
    tf, ds = c.pods["tiefighter"], c.pods[server]
    frontend = ServiceFrontend(VIP, PORT, 6, 77, (Backend(ds.ip, PORT),))
    for node in c.nodes:
        c.dp(node).update_service(77, [frontend])
    try:
        assert client(tf, VIP, "seq", "GET /")[0][0] == 200     # plain ClusterIP first
        sup = setup_l7(c, proxies, direction, tf, ds)
        got = client(tf, VIP, "seq", "POST /v1/request-landing", "PUT /v1/exhaust-port",
                     "POST /v1/request-landing")
        assert [g[0] for g in got] == [200, 403, 200], got
        assert got[0][1].startswith(f"{server} POST /v1/request-landing from {tf.ip}")
        assert got[1][1] == "Access denied"
        requests = [(f["verdict"], f["http"]["method"]) for f in sup.flows()
                    if f["type"] == "request"]
        assert requests == [("FORWARDED", "POST"), ("DROPPED", "PUT"), ("FORWARDED", "POST")]
    finally:
        for node in c.nodes:
            c.dp(node).sync_services([])


def test_same_node_egress_and_ingress_rules_both_apply(proxies: dict[str, ProxySupervisor],
                                                       clean_policy: Cluster) -> None:
    """A client with egress L7 rules and a destination with ingress L7 rules on one node: one
    redirect (the client's egress), and the destination's rules still decide each request."""
    c = clean_policy
    tf, ds = c.pods["tiefighter"], c.pods["deathstar1"]
    assert tf.node == ds.node
    proxies[tf.node].set_entries([
        L7Entry(tf.ip, EGRESS, ds.identity, PORT, PORT, (HttpRule(),), tf.identity),
        L7Entry(ds.ip, INGRESS, tf.identity, PORT, PORT, LANDING, ds.identity)])
    redirect(c, tf, Direction.EGRESS, ds.identity)
    redirect(c, ds, Direction.INGRESS, tf.identity)
    got = client(tf, ds.ip, "seq", "POST /v1/request-landing", "PUT /v1/exhaust-port")
    assert [g[0] for g in got] == [200, 403]


def test_clusterip_connections_stay_on_their_backend_through_the_proxy(
        proxies: dict[str, ProxySupervisor], clean_policy: Cluster) -> None:
    """Two backends, each with ingress L7 rules: every new connection through the ClusterIP
    keeps the backend its SYN chose (the choice is remembered under the client -> ClusterIP
    tuple, not the redirect's), so every one of them works to its end."""
    c = clean_policy
    tf = c.pods["tiefighter"]
    backends = [c.pods["deathstar1"], c.pods["deathstar2"]]
    frontend = ServiceFrontend(VIP, PORT, 6, 77, tuple(Backend(d.ip, PORT) for d in backends))
    for node in c.nodes:
        c.dp(node).update_service(77, [frontend])
    try:
        for ds in backends:
            proxies[ds.node].set_entries([L7Entry(ds.ip, INGRESS, tf.identity, PORT, PORT,
                                                  LANDING, ds.identity)])
            redirect(c, ds, Direction.INGRESS, tf.identity)
        answers = [client(tf, VIP, "seq", "POST /v1/request-landing", "PUT /v1/exhaust-port")
                   for _ in range(12)]
        assert [[g[0] for g in got] for got in answers] == [[200, 403]] * 12, answers
        served = {got[0][1].split()[0] for got in answers}
        assert served == {"deathstar1", "deathstar2"}, "both backends were chosen"
    finally:
        for node in c.nodes:
            c.dp(node).sync_services([])
