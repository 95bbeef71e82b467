"""Flows across the cluster, through `bulkhead observe`, from known traffic in a lab."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.lab import processes
from integration.lab.lab import Lab
from integration.lab.story import POLICY
from integration.labfixture import running_lab

pytestmark = pytest.mark.datapath
BIN = Path(sys.executable).parent
Flow = dict[str, Any]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("observe")) as lab:
        for name, node, labels, serve in [
                ("deathstar", "n1", ["org=empire", "class=deathstar"], ["80"]),
                ("tiefighter", "n2", ["org=empire", "class=tiefighter"], []),
                ("xwing", "n2", ["org=alliance", "class=xwing"], [])]:
            lab.pod_create(name, node, "default", labels, serve)
        bulkhead("policy", "apply", "-f", str(POLICY), "--wait")
        yield lab


def bulkhead(*args: str, timeout: float = 60) -> str:
    done = subprocess.run([str(BIN / "bulkhead"), *args], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout


def observe(*filters: str) -> list[Flow]:
    out = bulkhead("observe", "--last", "1000", *filters, "-o", "json")
    return [json.loads(line) for line in out.splitlines()]


def connect(lab: Lab, pod: str, ip: str, port: int) -> int:
    return lab.exec(pod, ["curl", "-s", "-o", "/dev/null", "-m", "2", f"http://{ip}:{port}/"])


def test_each_filter_returns_exactly_the_matching_flows(lab: Lab) -> None:
    state = lab.state()
    ds = state.pods["deathstar"]
    assert connect(lab, "tiefighter", ds.ip, 80) == 0       # allowed
    assert connect(lab, "xwing", ds.ip, 80) == 28           # denied by policy
    assert connect(lab, "tiefighter", ds.ip, 81) == 28      # denied: port
    everything = observe()
    assert everything, "no flows at all"
    tie, xw = state.pods["tiefighter"], state.pods["xwing"]
    cases: list[tuple[list[str], Callable[[Flow], bool]]] = [
        (["--from-label", "org=alliance"], lambda f: "k8s:org=alliance" in f["source"]["labels"]),
        (["--to-label", "k8s:class=deathstar"],
         lambda f: "k8s:class=deathstar" in f["destination"]["labels"]),
        (["--from-pod", "default/xwing"], lambda f: f["source"]["pod"] == "xwing"),
        (["--to-pod", "deathstar"], lambda f: f["destination"]["pod"] == "deathstar"),
        (["--from-ip", tie.ip], lambda f: f["source"]["ip"] == tie.ip),
        (["--to-ip", ds.ip], lambda f: f["destination"]["ip"] == ds.ip),
        (["--from-identity", str(xw.identity)], lambda f: f["source"]["identity"] == xw.identity),
        (["--to-identity", str(ds.identity)],
         lambda f: f["destination"]["identity"] == ds.identity),
        (["--verdict", "DROPPED"], lambda f: f["verdict"] == "DROPPED"),
        (["--verdict", "FORWARDED"], lambda f: f["verdict"] == "FORWARDED"),
        (["--port", "81"], lambda f: 81 in (f["source"]["port"], f["destination"]["port"])),
        (["--protocol", "tcp"], lambda f: f["protocol"] == "TCP"),
        (["--node", "n1"], lambda f: f["node"] == "n1"),
        (["--from-pod", "xwing", "--verdict", "FORWARDED", "--node", "n1"],
         lambda f: f["source"]["pod"] == "xwing" and f["verdict"] == "FORWARDED"
         and f["node"] == "n1"),
    ]
    for flags, predicate in cases:
        expected = [f for f in observe() if predicate(f)]
        got = observe(*flags)
        key = [(f["time"], f["node"]) for f in got]
        assert key == [(f["time"], f["node"]) for f in expected], flags
    assert observe("--from-pod", "xwing", "--verdict", "DROPPED"), "the xwing's drop is missing"
    assert observe("--port", "81", "--verdict", "DROPPED")
    assert observe("--from-pod", "xwing", "--verdict", "FORWARDED", "--node", "n1") == []
    future = observe("--since", "2199-01-01T00:00:00Z")
    assert future == []


class Follower:
    """`bulkhead observe --follow -o json` in the background, collecting lines with the time
    each arrived."""

    def __init__(self, *filters: str) -> None:
        self.process = subprocess.Popen(
            [str(BIN / "bulkhead"), "observe", "--last", "0", "--follow", *filters, "-o",
             "json"], stdout=subprocess.PIPE, text=True)
        self.flows: list[tuple[float, Flow]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.flows.append((time.monotonic(), json.loads(line)))

    def wait_for(self, predicate: Callable[[Flow], bool], timeout: float = 10) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for arrived, flow in self.flows:
                if predicate(flow):
                    return arrived
            time.sleep(0.02)
        return None

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def test_follow_delivers_a_new_drop(lab: Lab) -> None:
    ds = lab.state().pods["deathstar"]
    follower = Follower("--from-pod", "xwing", "--verdict", "DROPPED")
    try:
        time.sleep(1.5)  # the relay subscribes to every agent
        sent = time.monotonic()
        connect(lab, "xwing", ds.ip, 80)
        arrived = follower.wait_for(lambda f: f["destination"]["port"] == 80)
        assert arrived is not None, "no drop arrived on --follow"
        print(f"drop delivered {1000 * (arrived - sent):.0f} ms after the packet was sent")
    finally:
        follower.stop()


def test_relay_survives_agent_and_controlplane_restarts(lab: Lab) -> None:
    state = lab.state()
    ds = state.pods["deathstar"]
    follower = Follower("--from-pod", "tiefighter")
    try:
        time.sleep(1.5)
        assert connect(lab, "tiefighter", ds.ip, 80) == 0
        assert follower.wait_for(lambda f: f["destination"]["port"] == 80) is not None
        # SIGKILL n1's agent (the deathstar's node); the lab starts it again.
        processes.stop(state.nodes["n1"].agent_pid, timeout=0)
        lab.up(2)
        before = len(follower.flows)
        assert connect(lab, "tiefighter", ds.ip, 80) == 0
        time.sleep(3)
        new = [f for _, f in follower.flows[before:]]
        nodes = sorted(f["node"] for f in new if f["destination"]["port"] == 80)
        assert nodes == ["n1", "n2"], f"after the agent restart, expected one flow per node: {new}"
        seen = [(f["time"], f["node"], f["source"]["port"]) for _, f in follower.flows]
        assert len(seen) == len(set(seen)), "the follow stream duplicated flows"
    finally:
        follower.stop()
    # A control-plane restart: what the agents hold is served again, once.
    held = observe("--from-pod", "tiefighter")
    processes.stop(lab.state().controlplane_pid)
    lab.up(2)
    again = observe("--from-pod", "tiefighter")
    key = [(f["time"], f["node"], f["source"]["port"]) for f in again]
    assert len(key) == len(set(key)), "duplicates after the control-plane restart"
    assert {(f["time"], f["node"]) for f in held} <= {(f["time"], f["node"]) for f in again}
