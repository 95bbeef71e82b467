"""`bulkhead connectivity test` on a two-node lab with a world (integration/lab/world.py):
it passes, the world and CIDR tests against the world's web server; with one node's policy map
emptied by hand it fails and names the tests that broke; an interrupted run (Ctrl-C, or the
CLI killed) leaves nothing behind once the run or a later one (or the agent) cleans up."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from bulkhead.rpcerror import field_violations
from bulkhead.v1 import agent_pb2, connectivity_pb2, connectivity_pb2_grpc
from integration.lab import credentials, processes
from integration.lab.lab import Lab
from integration.labfixture import running_lab
from nodeagent.datapath.layout import SIZES
from nodeagent.datapath.loader import pin_dir
from nodeagent.datapath.rawmap import RawMap
from nodeagent.pods import netns

pytestmark = [pytest.mark.datapath, pytest.mark.timeout(600)]
BIN = Path(sys.executable).parent
NAMESPACE = "bulkhead-test"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("connectivity"), world=True) as lab:
        yield lab


def connectivity(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "bulkhead"), "connectivity", "test", *args],
                          capture_output=True, text=True, timeout=500)


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(BIN / "bulkhead"), "connectivity", "test", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def bulkhead_json(*args: str) -> Any:
    done = subprocess.run([str(BIN / "bulkhead"), *args, "-o", "json"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def ct_namespaces(lab: Lab) -> list[str]:
    return [ns for ns in netns.namespaces(lab.state().prefix) if "-ct-" in ns]


def leftovers(lab: Lab) -> list[str]:
    """Everything of a connectivity test still there: test pods' namespaces and processes,
    endpoints on the agents, policies and services in bulkhead-test."""
    found = ct_namespaces(lab)
    for node in lab.state().nodes.values():
        listed = lab.agent(node).ListEndpoints(agent_pb2.ListAgentEndpointsRequest(), timeout=30)
        found += [f"endpoint {node.name}/{e.name}" for e in listed.endpoints
                  if e.namespace == NAMESPACE]
    found += [f"policy {p['name']}" for p in bulkhead_json("policy", "list", "-n", NAMESPACE)]
    found += [f"service {s['name']}" for s in bulkhead_json("service", "list", "-n", NAMESPACE)]
    return found


def wait_for_tests_to_run(proc: subprocess.Popen[str]) -> list[str]:
    """Reads the progress until the first action ran (the pods and a test's policy exist)."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("  ") and "->" in line:
            return seen
    raise AssertionError(f"the run ended before any action: {''.join(seen)}")


def server_pids(lab: Lab) -> list[int]:
    return [pid for ns in ct_namespaces(lab) for pid in netns.pids_in(ns)]


def test_bad_requests_are_refused_by_the_agent_through_the_control_plane(lab: Lab) -> None:
    stub = connectivity_pb2_grpc.ConnectivityServiceStub(credentials.channel(lab.state()))
    with pytest.raises(grpc.RpcError) as err:
        stub.RunProbe(connectivity_pb2.ProbeRequest(node="n1", kind="smtp", ip="nowhere",
                                                    port=0, timeout_seconds=99), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
    assert [v.field for v in field_violations(err.value)] == [
        "kind", "ip", "port", "timeout_seconds"]
    assert (err.value.details() or "").startswith("node n1: ")  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as err:
        stub.RunProbe(connectivity_pb2.ProbeRequest(node="n2", from_pod="nobody", kind="icmp",
                                                    ip="192.0.2.1"), timeout=60)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as err:
        stub.CreateTestPod(connectivity_pb2.CreateTestPodRequest(
            node="n1", name="Not_A_Label", serve_ports=[70000]), timeout=60)
    assert [v.field for v in field_violations(err.value)] == ["name", "serve_ports[0]"]
    assert leftovers(lab) == []


def test_connectivity_test_passes_on_a_two_node_lab(lab: Lab) -> None:
    done = connectivity("-o", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    summary = report["summary"]
    assert summary["successful"] and summary["failed"] == 0
    ran = {t["name"] for t in report["tests"] if t["status"] == "passed"}
    assert {"no-policies", "no-policies-service", "client-ingress", "all-ingress-deny",
            "all-egress-deny", "ingress-from-other-client-deny", "client-egress-expressions",
            "entities-cluster", "entities-host", "port-range", "deny-precedence",
            "l7-method-path", "service-policy", "entities-world", "to-cidr"} <= ran
    # The lab's world is the default --external-ip: nothing is skipped.
    assert summary["skipped"] == 0
    assert "outside the cluster: 192.0.2.203" in done.stderr
    # The world address is reached as world (2) under toEntities: [world], and with its own
    # CIDR identity (a cidr:192.0.2.203/32 label, not world) under toCIDR.
    world_ids = {t["name"]: {f["destination"]["identity"] for a in t["actions"]
                             if a["target"] == "external" for f in a["flows"]
                             if f["verdict"] == "FORWARDED"} for t in report["tests"]}
    assert world_ids["entities-world"] == {2}
    (cidr_id,) = world_ids["to-cidr"]
    assert cidr_id >= 256
    assert "cidr:192.0.2.203/32" in bulkhead_json("identity", "get", str(cidr_id))["labels"]
    # Every action saw its expected verdict and a recorded flow.
    for test in report["tests"]:
        for action in test["actions"]:
            assert action["passed"] and action["seen"] == action["expected"], action
            assert action["flows"], action
    deny = next(a for t in report["tests"] if t["name"] == "deny-precedence"
                for a in t["actions"] if a["expected"] == "deny")
    assert "Policy denied by denylist" in {f["drop_reason"] for f in deny["flows"]}
    assert leftovers(lab) == []


def test_without_an_external_address_the_world_tests_are_skipped(lab: Lab) -> None:
    done = connectivity("--test", "world", "--test", "cidr", "--external-ip", "", "-o", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    skipped = {t["name"]: t["skip_reason"] for t in report["tests"] if t["status"] == "skipped"}
    assert set(skipped) == {"entities-world", "to-cidr"}
    assert all("--external-ip" in why for why in skipped.values())
    assert leftovers(lab) == []


def _empty_policy_map(pin: Path, stop: threading.Event) -> None:
    """Deletes every entry of a node's policy map, again and again until `stop`: the agent
    writes entries only when policy changes, so each new scenario's entries vanish too."""
    import bcc  # type: ignore[import-not-found]

    fd = bcc.libbcc.lib.bpf_obj_get(str(pin).encode())
    assert fd >= 0, f"cannot open {pin}"
    key_size, value_size = SIZES["policy"]
    policy = RawMap("policy", fd, key_size, value_size, 16384)
    try:
        while not stop.is_set():
            with contextlib.suppress(OSError):  # an entry the agent removed meanwhile
                keys = list(policy.dump())
                if keys:
                    policy.delete(keys)
            stop.wait(0.01)
    finally:
        os.close(fd)


def test_an_emptied_policy_map_fails_the_tests_that_need_it(lab: Lab) -> None:
    state = lab.state()
    pin = pin_dir("n2", Path(state.pin_root)) / "policy"
    stop = threading.Event()
    emptier = threading.Thread(target=_empty_policy_map, args=(pin, stop), daemon=True)
    emptier.start()
    try:
        done = connectivity("--test", "^no-policies$", "--test", "^client-ingress$",
                            "--test", "^port-range$", "--test", "^deny-precedence$")
    finally:
        stop.set()
        emptier.join()
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("✅") and "no-policies" in line for line in lines), done.stdout
    for name in ("client-ingress", "port-range", "deny-precedence"):
        assert any(line.startswith("❌") and name in line for line in lines), \
            done.stdout + done.stderr
    summary = lines[-1]
    assert summary.startswith("❌ 3 of 4 tests failed"), summary
    assert "client-ingress, port-range, deny-precedence" in summary
    # A failure names the action, the expected and the seen result, and the flows.
    assert "client2 -> echo-other:8080 (http GET /): expected allow, seen default-deny" \
        in done.stdout
    assert "Policy denied" in done.stdout
    assert leftovers(lab) == []


def test_ctrl_c_removes_everything(lab: Lab) -> None:
    proc = start()
    try:
        wait_for_tests_to_run(proc)
        servers = server_pids(lab)
        pods = ct_namespaces(lab)
        assert servers and pods
        # A second run meanwhile is refused before it touches anything (the lock).
        second = connectivity("--test", "^no-policies$", "-o", "json")
        assert second.returncode == 1 and second.stdout == ""
        assert second.stderr.startswith("bulkhead: FAILED_PRECONDITION: another connectivity "
                                        "test is running: held by "), second.stderr
        assert f"pid {proc.pid} " in second.stderr, second.stderr
        assert ct_namespaces(lab) == pods, "the refused run touched the first run's pods"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        processes.stop(proc.pid)
    assert proc.returncode == 130, err
    assert "cleaning up" in err
    assert leftovers(lab) == []
    assert not [pid for pid in servers if processes.alive(pid)]


def test_a_killed_run_is_cleaned_up_by_the_agent_and_the_next_run(lab: Lab) -> None:
    proc = start()
    try:
        wait_for_tests_to_run(proc)
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    assert ct_namespaces(lab), "the killed run left no test pods to clean up"
    # The agent of n2 restarts: it removes its node's leftovers by itself.
    state = lab.state()
    processes.stop(state.nodes["n2"].agent_pid)
    lab.up(2)
    n2 = [ns for ns in ct_namespaces(lab) if "-n2-ct-" in ns]
    deadline = time.monotonic() + 60
    while n2 and time.monotonic() < deadline:
        time.sleep(0.5)
        n2 = [ns for ns in ct_namespaces(lab) if "-n2-ct-" in ns]
    assert n2 == []
    # The next run removes the rest (n1's pods, the policy, the service) first, and passes.
    done = connectivity("--test", "^no-policies$")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "removed leftovers of an earlier run" in done.stderr
    assert "pod n1/client" in done.stderr
    assert done.stdout.splitlines() == ["✅ [1/1] no-policies (7 actions)",
                                        "✅ All 1 tests (7 actions) successful, 0 skipped"]
    assert leftovers(lab) == []
