"""The agent's L7 proxy process: started with the agent, restarted when it dies, adopted by a
restarted agent, shown by `bulkhead agent status` (the proxy's HTTP handling and the redirect
are tested in tests/datapath/test_l7.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from bulkhead.httprules import HttpRule
from bulkhead.v1 import agent_pb2
from nodeagent.datapath import Datapath, PolicyEntry
from nodeagent.datapath.layout import Direction
from nodeagent.proxy.control import ProxyControl
from nodeagent.proxy.rules import INGRESS, L7Entry
from tests.agent.cluster import BIN, Cluster

pytestmark = pytest.mark.datapath


def proxy(lab: Cluster, short: str) -> agent_pb2.ProxyStatus:
    status = lab.agent(short).AgentStatus(agent_pb2.AgentStatusRequest(), timeout=10)
    assert status.HasField("proxy")
    return status.proxy


def wait_running(lab: Cluster, short: str, other_than: int, timeout: float = 30.0
                 ) -> agent_pb2.ProxyStatus:
    deadline = time.monotonic() + timeout
    while True:
        p = proxy(lab, short)
        if p.running and p.pid != other_than and p.listeners:
            return p
        assert time.monotonic() < deadline, f"the proxy did not come back: {p}"
        time.sleep(0.2)


def test_agent_starts_restarts_and_hands_over_its_proxy(lab: Cluster) -> None:
    first = proxy(lab, "n1")
    assert first.running and list(first.listeners) == ["127.0.0.1:15001"]
    assert not first.adopted and first.restarts == 0

    os.kill(first.pid, signal.SIGKILL)
    second = wait_running(lab, "n1", other_than=first.pid)
    assert second.restarts == 1 and list(second.listeners) == ["127.0.0.1:15001"]

    out = subprocess.run([str(BIN / "bulkhead"), "agent", "--agent-socket",
                          str(lab.nodes["n1"].socket), "status"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert f"L7 proxy:       Ok, pid {second.pid}, listening on 127.0.0.1:15001" in out.stdout
    js = subprocess.run([str(BIN / "bulkhead"), "agent", "--agent-socket",
                         str(lab.nodes["n1"].socket), "status", "-o", "json"],
                        capture_output=True, text=True, timeout=30)
    assert json.loads(js.stdout)["proxy"]["pid"] == second.pid

    lab.kill_agent("n1")  # SIGKILL: the proxy keeps running, the next agent adopts it
    lab.start_agent("n1")
    third = proxy(lab, "n1")
    assert third.running and third.adopted and third.pid == second.pid


def test_proxy_flows_reach_the_agents_flow_store(lab: Cluster) -> None:
    """Requests through the agent's proxy show up in `bulkhead agent flows` the Hubble way.
    The L7 entry is written into the maps and the proxy directly (the control plane's policy
    parser takes `rules.http` separately)."""
    ds = lab.add_pod("deathstar-l7", "n1", ["k8s:org=empire", "k8s:class=deathstar-l7"],
                     serve=True)
    tf = lab.add_pod("tiefighter-l7", "n1", ["k8s:org=empire", "k8s:class=tiefighter-l7"])
    node = lab.nodes["n1"]
    ctl = ProxyControl(node.socket.with_suffix(".proxy.sock"))
    dp = Datapath(node.name, netns=node.ns, pin_root=lab.pin_root)
    try:
        ctl.set(15001, [L7Entry(ds.ip, INGRESS, tf.identity, 80, 80,
                                (HttpRule(method="GET", path="/"),))])
        dp.sync_policy(ds.ep_id, [PolicyEntry(Direction.INGRESS, tf.identity, 6, 80, 80,
                                              proxy_port=15001)],
                       ingress_enforced=True, egress_enforced=False)
        for method in ("GET", "PUT"):
            subprocess.run(["ip", "netns", "exec", tf.ns, "curl", "-s", "-o", "/dev/null",
                            "--max-time", "5", "-X", method, f"http://{ds.ip}/"],
                           capture_output=True, timeout=30)
        deadline = time.monotonic() + 10
        while True:
            out = cli_agent(lab, "flows", "--type", "l7", "--last", "10")
            if "http-response" in out or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        src = "default/tiefighter-l7:"
        assert f"http-request FORWARDED (HTTP/1.1 GET http://{ds.ip}/)" in out, out
        assert f"http-request DROPPED (HTTP/1.1 PUT http://{ds.ip}/)" in out, out
        assert f"-> {src}" in out and "http-response FORWARDED (HTTP/1.1 200 " in out, out
        denied = cli_agent(lab, "flows", "--http-status", "4+", "-o", "json")
        rows = [json.loads(line) for line in denied.splitlines()]
        assert [(r["type"], r["l7"]["http"]["method"]) for r in rows] == [("L7", "PUT")]
        assert rows[0]["source"]["identity"] == tf.identity
        assert rows[0]["destination"]["pod"] == "deathstar-l7"
        status = proxy(lab, "n1")
        assert status.requests_allowed >= 1 and status.requests_denied >= 1
        deadline = time.monotonic() + 10  # the agent reads the proxy's counters every second
        while True:
            with urllib.request.urlopen(node.metrics_url, timeout=5) as response:
                text = response.read().decode()
            if 'verdict="DROPPED"' in text or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert "bulkhead_proxy_up 1.0" in text
        assert ('bulkhead_proxy_requests_total{code="403",method="PUT",verdict="DROPPED"} 1.0'
                in text), text
        assert "bulkhead_proxy_latency_seconds_count" in text
    finally:
        dp.sync_policy(ds.ep_id, [], ingress_enforced=False, egress_enforced=False)
        dp.close()
        ctl.close()


def cli_agent(lab: Cluster, *args: str) -> str:
    out = subprocess.run([str(BIN / "bulkhead"), "agent", "--agent-socket",
                          str(lab.nodes["n1"].socket), *args],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout
