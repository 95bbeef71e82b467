"""The agent's L7 proxy process: started with the agent, restarted when it dies, adopted by a
restarted agent, shown by `bulkhead agent status` (the proxy's HTTP handling and the redirect
are tested in tests/datapath/test_l7.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from bulkhead.v1 import agent_pb2
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
