"""Flows name the service a connection was sent to, end to end: a Service applied to the
control plane, a pod dialling its ClusterIP, `bulkhead observe --to-service` through the
relay and `bulkhead agent flows --to-service` on the node."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from typing import Any

import grpc
import pytest

from bulkhead.v1 import service_pb2, service_pb2_grpc
from tests.agent.cluster import BIN, Cluster, probe

pytestmark = pytest.mark.datapath

WAIT = 30.0   # an upper bound for waits, never a latency assertion

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 8080, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  selector: {app: nobody}
  ports: [{port: 8080, targetPort: 80}]
"""


def observe(lab: Cluster, *args: str) -> list[dict[str, Any]]:
    out = subprocess.run([str(BIN / "bulkhead"), "--server", lab.cp_address, "--insecure",
                          "observe", "--last", "1000", "-o", "json", *args],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def agent_flows(lab: Cluster, short: str, *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([str(BIN / "bulkhead"), "agent", "--agent-socket",
                          str(lab.nodes[short].socket), "flows", "--last", "1000", *args],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out


def key(flow: dict[str, Any]) -> tuple[str, int]:
    return flow["time"], flow["source"]["port"]


def test_flows_name_the_service_they_were_sent_to(lab: Cluster) -> None:
    # n1's agent also serves its API on TCP, so the control plane's relay reads its flows.
    lab.kill_agent("n1", signal.SIGTERM)
    lab.start_agent("n1", api_listen="127.0.0.1:0")
    web = lab.add_pod("web-1", "n2", ["k8s:app=web"], serve=True)
    client = lab.add_pod("client", "n1", ["k8s:app=client"])
    with grpc.insecure_channel(lab.cp_address) as channel:
        applied = service_pb2_grpc.ServiceServiceStub(channel).Apply(
            service_pb2.ApplyServicesRequest(yaml=SERVICES), timeout=30)
    vips = {s.service.name: s.service.cluster_ip for s in applied.services}
    deadline = time.monotonic() + WAIT
    while probe(client, "tcp", vips["web"], 8080) != "ok":
        assert time.monotonic() < deadline, "the ClusterIP never answered"
        time.sleep(0.2)
    assert probe(client, "tcp", web.ip, 80) == "ok"  # the same backend, by its pod IP
    assert probe(client, "tcp", vips["empty"], 8080, timeout=5.0) == "refused"

    # Through the relay: the client's connections to the ClusterIP, and only those.
    deadline = time.monotonic() + WAIT
    while not (to_web := observe(lab, "--to-service", "default/web")):
        assert time.monotonic() < deadline, "no flow names the service"
        time.sleep(0.2)
    n1 = lab.nodes["n1"].name
    assert {(json.dumps(f["destination_service"], sort_keys=True), f["verdict"], f["node"],
             f["source"]["pod"], f["destination"]["pod"], f["destination"]["ip"],
             f["destination"]["port"])
            for f in to_web} == {('{"name": "web", "namespace": "default"}', "FORWARDED", n1,
                                  "client", "web-1", web.ip, 80)}
    # Every flow from the client to the backend seen on its node: the ones through the
    # service name it (exactly those --to-service returned); the direct one names none.
    sent = observe(lab, "--from-pod", "default/client", "--to-ip", web.ip, "--node", n1)
    assert {key(f) for f in sent if f["destination_service"]} == {key(f) for f in to_web}
    direct = [f for f in sent if f["destination_service"] is None]
    assert direct and not {key(f) for f in direct} & {key(f) for f in to_web}
    assert observe(lab, "--to-service", "other/web") == []

    # A ClusterIP without a backend: the drop names the service, and the line shows it as
    # Hubble does (the service where no pod is known).
    deadline = time.monotonic() + WAIT
    while not (dropped := observe(lab, "--to-service", "default/empty")):
        assert time.monotonic() < deadline, "no drop names the service without backends"
        time.sleep(0.2)
    assert {(f["verdict"], f["drop_reason"], f["destination"]["ip"]) for f in dropped} == {
        ("DROPPED", "No service backend", vips["empty"])}

    # The node's own API shares the filter.
    local = agent_flows(lab, "n1", "--to-service", "default/web", "-o", "json").stdout
    assert {key(json.loads(line)) for line in local.splitlines()} == {key(f) for f in to_web}
    text = agent_flows(lab, "n1", "--to-service", "default/empty").stdout
    assert "-> default/empty:8080 (ID:" in text and "DROPPED" in text
