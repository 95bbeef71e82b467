"""Host policies end to end in a bpf lab of three nodes: the agent of the selected node gets
its host policy through its subscription and its underlay interface enforces it once the
revision is acked (`policy apply --wait`) — an ssh-like port allowed from the node labelled as
a bastion only, the drops in `bulkhead observe` — and a deny-all host policy leaves the node
reachable by its control plane, so deleting the policy opens it again."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bulkhead.v1 import agent_pb2
from integration.labfixture import running_lab

pytestmark = pytest.mark.datapath
ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "tests" / "datapath" / "netprobe.py"
SSH = 2222
SSH_POLICY = """apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: ssh-from-bastion}
spec:
  nodeSelector: {matchLabels: {kubernetes.io/hostname: n1}}
  ingress:
  - fromNodes: [{matchLabels: {bastion: "true"}}]
    toPorts: [{ports: [{port: "2222", protocol: TCP}]}]
  - fromEntities: [host]
"""
DENY_ALL = """apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: lockdown}
spec:
  nodeSelector: {}
  ingress: [{}]
  egress: [{}]
"""


def _until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


@contextlib.contextmanager
def _server(netns: str, ip: str, port: int) -> Iterator[None]:
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m", "http.server",
                             str(port), "--bind", ip], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_ssh_from_one_node_and_deny_all_keeps_the_control_plane(tmp_path: Path) -> None:
    with running_lab(tmp_path, nodes=3) as lab:
        state = lab.state()
        nodes = state.nodes

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "cli.main", "--server",
                                   state.controlplane, *args], capture_output=True, text=True,
                                  timeout=60)

        def probe(src: str, dst: str) -> str:
            out = subprocess.run(["ip", "netns", "exec", nodes[src].netns, sys.executable,
                                  str(PROBE), "tcp", nodes[dst].underlay_ip, str(SSH), "1.0"],
                                 capture_output=True, text=True, timeout=20)
            return out.stdout.strip()

        def host_firewall(node: str) -> agent_pb2.AgentStatusResponse:
            status: agent_pb2.AgentStatusResponse = lab.agent(nodes[node]).AgentStatus(
                agent_pb2.AgentStatusRequest(), timeout=10)
            return status

        def apply(text: str, name: str) -> None:
            """Returns once every node has its host policy in its maps (acked)."""
            path = tmp_path / f"{name}.yaml"
            path.write_text(text)
            done = cli("policy", "apply", "-f", str(path), "--wait", "--timeout", "30")
            assert done.returncode == 0, done.stderr + done.stdout

        assert cli("node", "label", "n2", "bastion=true").returncode == 0
        with _server(nodes["n1"].netns, nodes["n1"].underlay_ip, SSH):
            _until(lambda: probe("n3", "n1") == "ok", "the server")
            assert probe("n2", "n1") == "ok"
            apply(SSH_POLICY, "ssh")
            assert host_firewall("n1").host_firewall.ingress_enforced, "in force once acked"
            assert probe("n2", "n1") == "ok", "the bastion reaches the port"
            assert probe("n3", "n1") == "timeout", "no other node does"
            assert not host_firewall("n3").host_firewall.ingress_enforced
            # The drop is a flow: n3 -> n1's host on the port, the reason, the node named.
            shown = cli("observe", "--verdict", "DROPPED", "--node", "n1", "--port", str(SSH),
                        "--from-ip", nodes["n3"].underlay_ip, "-o", "json")
            assert shown.returncode == 0, shown.stderr
            drops = [json.loads(row) for row in shown.stdout.splitlines()]
            assert drops, "the host firewall's drop is not in observe"
            assert {(d["destination"]["node_name"], tuple(d["destination"]["labels"]),
                     d["drop_reason"], d["direction"]) for d in drops} == {
                ("n1", ("reserved:host",), "Policy denied", "ingress")}, drops
            assert {d["source"]["node_name"] for d in drops} == {"n3"}
            # Labelling n3 a bastion lets it in, with no policy change.
            assert cli("node", "label", "n3", "bastion=true").returncode == 0
            _until(lambda: probe("n3", "n1") == "ok", "n3 to be let in")

            # Deny all, everywhere: the agents stay connected and say what is exempt, and
            # deleting the policy through the control plane opens the nodes again.
            apply(DENY_ALL, "lockdown")
            _until(lambda: host_firewall("n1").host_firewall.egress_enforced,
                   "the lockdown on n1")
            status = host_firewall("n1")
            assert status.connected
            allowed = list(status.host_firewall.always_allowed)
            assert any(a.endswith("(control plane)") for a in allowed), allowed
            assert "UDP 8472 (VXLAN tunnel)" in allowed
            assert probe("n2", "n1") == "timeout"
            text = cli("agent", "--agent-socket", nodes["n1"].socket, "status")
            assert text.returncode == 0, text.stderr
            assert "Host firewall:  ingress and egress enforced" in text.stdout, text.stdout
            assert "Always allowed: TCP " in text.stdout, text.stdout
            assert cli("policy", "delete", "--clusterwide", "lockdown").returncode == 0
            assert cli("policy", "delete", "--clusterwide", "ssh-from-bastion").returncode == 0
            _until(lambda: not host_firewall("n1").host_firewall.egress_enforced
                   and not host_firewall("n1").host_firewall.ingress_enforced,
                   "the lockdown to lift")
            assert probe("n2", "n1") == "ok"


HOST_AND_PODS = """apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: host-and-pods}
spec:
  nodeSelector: {matchLabels: {kubernetes.io/hostname: n1}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "2222", protocol: TCP}]}]
  egress:
  - toEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
"""


def test_host_and_pods_both_ways(tmp_path: Path) -> None:
    """Pod -> host is the host's ingress, host -> pod its egress, with pods as peers."""
    with running_lab(tmp_path, nodes=1) as lab:
        lab.pod_create("web", "n1", "default", ["app=web"], serve=["80", "8080"])
        lab.pod_create("other", "n1", "default", ["app=other"], serve=["80"])
        state = lab.state()
        n1, pods = state.nodes["n1"], state.pods

        def probe(netns: str, ip: str, port: int) -> str:
            out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, str(PROBE),
                                  "tcp", ip, str(port), "1.0"],
                                 capture_output=True, text=True, timeout=20)
            return out.stdout.strip()

        def enforced() -> bool:
            status: agent_pb2.AgentStatusResponse = lab.agent(n1).AgentStatus(
                agent_pb2.AgentStatusRequest(), timeout=10)
            return status.host_firewall.egress_enforced

        with _server(n1.netns, n1.underlay_ip, SSH):
            _until(lambda: probe(pods["other"].netns, n1.underlay_ip, SSH) == "ok",
                   "the host's server")
            assert probe(n1.netns, pods["other"].ip, 80) == "ok"
            path = tmp_path / "hp.yaml"
            path.write_text(HOST_AND_PODS)
            done = subprocess.run([sys.executable, "-m", "cli.main", "--server",
                                   state.controlplane, "policy", "apply", "-f", str(path)],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            _until(enforced, "n1's host policy")
            assert probe(pods["web"].netns, n1.underlay_ip, SSH) == "ok", "web -> host allowed"
            assert probe(pods["other"].netns, n1.underlay_ip, SSH) == "timeout"
            assert probe(n1.netns, pods["web"].ip, 80) == "ok", "host -> web:80 allowed"
            assert probe(n1.netns, pods["web"].ip, 8080) == "timeout"
            assert probe(n1.netns, pods["other"].ip, 80) == "timeout"
            # The agent's DNS server for pods stays reachable (exempt like the control plane).
            assert _dns_answers(pods["other"].netns), "pods' DNS is exempt"


DNS_QUERY = ("import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
             "s.settimeout(2);q=b'\\x12\\x34\\x01\\x00\\x00\\x01'+bytes(6)+"
             "b'\\x04nope\\x07default\\x03svc\\x07cluster\\x05local\\x00\\x00\\x01"
             "\\x00\\x01';"
             "s.sendto(q,('169.254.1.1',53));d=s.recv(512);print(d[:2].hex())")


def _dns_answers(netns: str) -> bool:
    out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", DNS_QUERY],
                         capture_output=True, text=True, timeout=20)
    return out.stdout.strip() == "1234"
