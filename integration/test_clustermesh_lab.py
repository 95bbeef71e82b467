"""Two clusters in one lab (`bulkhead-lab up --clusters 2`), each with its own etcd and control
plane, connected both ways: pods talk across clusters over VXLAN with their identity (cluster
bits included) in the VNI, policies selecting the peer's cluster are enforced on both sides,
a remote etcd outage keeps cross-cluster traffic flowing, and disconnecting removes every
remote entry from the agents' BPF maps."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controlplane.pki import etcdtls
from controlplane.store.keys import Keys
from integration.lab import credentials, multicluster, processes
from integration.lab.lab import Lab
from integration.labfixture import running_lab

pytestmark = pytest.mark.datapath
BIN = Path(sys.executable).parent
WAIT = 60.0

INGRESS_NOT_FROM_C2 = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-not-from-c2, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEntities: [all]
  ingressDeny:
  - fromEndpoints:
    - matchLabels: {io.cilium.k8s.policy.cluster: c2}
"""

EGRESS_NOT_TO_C2 = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: cli-not-to-c2, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: cli}}
  egress:
  - toEntities: [all]
  egressDeny:
  - toEndpoints:
    - matchLabels: {io.cilium.k8s.policy.cluster: c2}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("mesh"), nodes=1, clusters=2) as lab:
        for name, cluster, labels, serve in [("web1", "c1", ["app=web"], ["80"]),
                                             ("cli1", "c1", ["app=cli"], []),
                                             ("web2", "c2", ["app=web"], ["80"]),
                                             ("cli2", "c2", ["app=cli"], [])]:
            lab.pod_create(name, "n1", "default", labels, serve, cluster=cluster)
        yield lab


def cluster_flags(lab: Lab, cluster: str) -> list[str]:
    """`bulkhead` flags for `cluster`: its control plane's address and admin credential (each
    cluster has its own CA; the published pointer files name c1's)."""
    return credentials.plane(lab.state(), cluster).cli_flags()


def bulkhead(lab: Lab, cluster: str, *args: str, check: bool = True) -> str:
    done = subprocess.run([str(BIN / "bulkhead"), *cluster_flags(lab, cluster), *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 or not check, done.stderr
    return done.stdout


def agent(lab: Lab, key: str, *args: str) -> str:
    socket = lab.state().nodes[key].socket
    done = subprocess.run([str(BIN / "bulkhead"), "agent", "--agent-socket", socket, *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def curl(lab: Lab, pod: str, target: str) -> int:
    """curl's exit code: 0 answered, 28 timed out (dropped)."""
    ip = lab.state().pods[target].ip
    return lab.exec(pod, ["curl", "-s", "-o", "/dev/null", "-m", "2", f"http://{ip}/"])


def eventually(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """An upper bound for a wait, never a latency assertion."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


def apply(lab: Lab, cluster: str, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(text)
        f.flush()
        bulkhead(lab, cluster, "policy", "apply", "-f", f.name, "--wait")


def test_identities_carry_the_cluster_and_cross_cluster_pods_talk(lab: Lab) -> None:
    pods = lab.state().pods
    assert pods["web1"].identity >> 16 == 1 and pods["web2"].identity >> 16 == 2
    # c2's pod identity is known in c1 with its cluster label
    got = json.loads(bulkhead(lab, "c1", "identity", "get", str(pods["web2"].identity),
                              "-o", "json"))
    assert "k8s:io.cilium.k8s.policy.cluster=c2" in json.dumps(got)
    assert curl(lab, "cli1", "web2") == 0
    assert curl(lab, "cli2", "web1") == 0
    # the receiving agent saw the sender's identity (from the VNI), not world
    flows = agent(lab, "c1/n1", "flows", "--last", "200", "-o", "json")
    assert str(pods["cli2"].identity) in flows


def test_each_cluster_is_secured_with_its_own_credentials(lab: Lab) -> None:
    state = lab.state()
    c2 = state.clusters["c2"]
    etcd_ca = multicluster.etcd_tls(state, c2).ca
    # c2's etcd takes neither plaintext nor a TLS client without a certificate of its CA ...
    for argv in (["curl", "-s", "-m", "2", f"http://{c2.etcd}/health"],
                 ["curl", "-s", "-m", "2", "--cacert", str(etcd_ca),
                  f"https://{c2.etcd}/health"]):
        done = subprocess.run(argv, capture_output=True, text=True)
        assert '"health":"true"' not in done.stdout.replace(" ", ""), argv
    # ... yet c1's syncer reads it (with the CA and client certificate `connect` was given)
    status = json.loads(bulkhead(lab, "c1", "clustermesh", "status", "-o", "json"))
    assert [(r["cluster"]["name"], r["ready"]) for r in status["remotes"]] == [("c2", True)]
    # ... and only reads it: etcd's auth refuses c1's credential a write (issue 13)
    files = etcdtls.client(credentials.controlplane_dir(state, "c2"), "clustermesh-c1")
    etcdctl = ["etcdctl", "--endpoints", f"https://{c2.etcd}", "--cacert", str(files.cacert),
               "--cert", str(files.cert), "--key", str(files.key)]
    node = Keys("c2").node("n1")
    read = subprocess.run([*etcdctl, "get", node, "--print-value-only"],
                          capture_output=True, text=True, timeout=30,
                          env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
    assert read.returncode == 0 and '"name"' in read.stdout, read.stderr
    write = subprocess.run([*etcdctl, "put", node, "stolen"], capture_output=True, text=True,
                           timeout=30, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
    assert write.returncode != 0 and "permission denied" in write.stderr, write
    # each cluster has its own CA: c1's admin credential is refused by c2's control plane
    c1_flags = cluster_flags(lab, "c1")
    c1_flags[c1_flags.index("--server") + 1] = c2.server
    refused = subprocess.run([str(BIN / "bulkhead"), *c1_flags, "node", "list"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    # `bulkhead` without flags finds c1 (the published address and admin pointer)
    done = subprocess.run([str(BIN / "bulkhead"), "node", "list", "-o", "json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    local = [n for n in json.loads(done.stdout) if n.get("cluster", "") in ("", "c1")]
    assert [n["name"] for n in local] == ["n1"] and local[0]["pod_cidr"].startswith("10.1.")
    # `bulkhead-lab status` has every cluster's nodes' pod CIDRs
    done = subprocess.run([str(BIN / "bulkhead-lab"), "--name", lab.name, "status", "-o",
                           "json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    cidrs = {(n["cluster"], n["name"]): n["pod_cidr"] for n in json.loads(done.stdout)["nodes"]}
    assert cidrs[("c1", "n1")].startswith("10.1.") and cidrs[("c2", "n1")].startswith("10.2.")


def test_policy_selecting_the_peer_cluster_is_enforced_on_both_sides(lab: Lab) -> None:
    try:
        apply(lab, "c1", INGRESS_NOT_FROM_C2)   # enforced by c1's node on receipt
        eventually(lambda: curl(lab, "cli2", "web1") == 28, "c2 -> web1 to be denied")
        assert curl(lab, "cli1", "web1") == 0, "same-cluster traffic must be unaffected"
        assert curl(lab, "cli2", "web2") == 0
        apply(lab, "c1", EGRESS_NOT_TO_C2)      # enforced by c1's node at the source
        eventually(lambda: curl(lab, "cli1", "web2") == 28, "cli1 -> c2 to be denied")
        assert curl(lab, "cli1", "web1") == 0
    finally:
        bulkhead(lab, "c1", "policy", "delete", "default/web-not-from-c2", check=False)
        bulkhead(lab, "c1", "policy", "delete", "default/cli-not-to-c2", check=False)
    eventually(lambda: curl(lab, "cli2", "web1") == 0 and curl(lab, "cli1", "web2") == 0,
               "cross-cluster traffic to be allowed again")


GLOBAL = '"service.cilium.io/global": "true"'


def service_yaml(annotations: str) -> str:
    return f"""\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
  annotations: {{{annotations}}}
spec:
  selector: {{app: web}}
  ports: [{{port: 8080, targetPort: 80, protocol: TCP}}]
"""


def apply_service(lab: Lab, cluster: str, annotations: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(service_yaml(annotations))
        f.flush()
        bulkhead(lab, cluster, "service", "apply", "-f", f.name)
    got = json.loads(bulkhead(lab, cluster, "service", "get", "default/web", "-o", "json"))
    return str(got["cluster_ip"])


def backend_clusters(lab: Lab) -> set[str]:
    listed = json.loads(bulkhead(lab, "c1", "service", "list", "-o", "json"))
    return {b["cluster"] for s in listed if s["name"] == "web" for b in s["backends"]}


def answers(lab: Lab, pod: str, url: str, tries: int) -> set[str]:
    """Which backends answered `tries` new connections."""
    seen = set()
    for _ in range(tries):
        done = subprocess.run(["ip", "netns", "exec", lab.state().pods[pod].netns, "curl", "-s",
                               "-m", "2", url], capture_output=True, text=True)
        if done.returncode == 0:
            seen.add(done.stdout.strip())
    return seen


def test_global_service_reaches_backends_in_both_clusters_and_affinity_local(lab: Lab) -> None:
    try:
        vip = apply_service(lab, "c1", GLOBAL)
        apply_service(lab, "c2", GLOBAL)
        eventually(lambda: backend_clusters(lab) == {"", "c2"},
                   "c1's service to list c2's backend")
        assert "cluster c2" in bulkhead(lab, "c1", "service", "list")
        eventually(lambda: answers(lab, "cli1", f"http://{vip}:8080/", 12) == {"web1", "web2"},
                   "the global service to answer from both clusters")
        apply_service(lab, "c1", GLOBAL + ', "service.cilium.io/affinity": "local"')
        eventually(lambda: answers(lab, "cli1", f"http://{vip}:8080/", 12) == {"web1"},
                   "affinity local to keep connections in c1")
    finally:
        bulkhead(lab, "c1", "service", "delete", "default/web", check=False)
        bulkhead(lab, "c2", "service", "delete", "default/web", check=False)


def _remote_ready(lab: Lab, cluster: str) -> bool:
    status = json.loads(bulkhead(lab, cluster, "clustermesh", "status", "-o", "json"))
    return all(r.get("ready", False) for r in status["remotes"])


def test_remote_etcd_down_keeps_cross_cluster_traffic(lab: Lab) -> None:
    state = lab.state()
    c2 = state.clusters["c2"]
    multicluster.stop_etcd(state, c2)
    try:
        eventually(lambda: not _remote_ready(lab, "c1"), "c1 to see c2 not ready")
        status = json.loads(bulkhead(lab, "c1", "clustermesh", "status", "-o", "json"))
        assert status["remotes"][0]["last_error"]
        assert curl(lab, "cli1", "web2") == 0, "last-known remote state must stay in force"
        assert curl(lab, "cli2", "web1") == 0
    finally:
        multicluster.start_etcd(lab, lab.state(), lab.state().clusters["c2"])
    eventually(lambda: _remote_ready(lab, "c1"), "c1 to see c2 ready again")
    # a change in c2 after the outage arrives in c1
    lab.pod_create("web3", "n1", "default", ["app=web"], ["80"], cluster="c2")
    eventually(lambda: curl(lab, "cli1", "web3") == 0, "c2's new pod to be reachable from c1")


def test_control_plane_restart_keeps_cross_cluster_traffic(lab: Lab) -> None:
    """Agents keep enforcing what they have while their control plane is away, and the
    restarted one serves the mirror from its etcd at once: nothing runs with an empty remote
    view."""
    state = lab.state()
    c1 = state.clusters["c1"]
    processes.stop(c1.pid)
    try:
        assert curl(lab, "cli1", "web2") == 0 and curl(lab, "cli2", "web1") == 0
    finally:
        multicluster.start_controlplane(lab, state, c1)
    assert curl(lab, "cli1", "web2") == 0 and curl(lab, "cli2", "web1") == 0
    eventually(lambda: multicluster.meshed(state, c1, 1), "c1's nodes to be connected to c2 again")
    assert curl(lab, "cli1", "web2") == 0 and curl(lab, "cli2", "web1") == 0


def test_disconnect_removes_every_remote_entry(lab: Lab) -> None:
    state = lab.state()
    web2 = state.pods["web2"]
    c2_node = state.nodes["c2/n1"].underlay_ip
    assert web2.ip in agent(lab, "c1/n1", "bpf", "ipcache", "list", "-o", "json")
    assert c2_node in agent(lab, "c1/n1", "bpf", "tunnel", "list", "-o", "json")
    bulkhead(lab, "c1", "clustermesh", "disconnect", "c2")
    eventually(lambda: web2.ip not in agent(lab, "c1/n1", "bpf", "ipcache", "list", "-o",
                                             "json"), "c2's pods to leave c1's ipcache map")
    eventually(lambda: c2_node not in agent(lab, "c1/n1", "bpf", "ipcache", "list", "-o",
                                             "json") + agent(lab, "c1/n1", "bpf", "tunnel",
                                                              "list", "-o", "json"),
               "c2's node to leave c1's ipcache and tunnel maps")
    assert curl(lab, "cli1", "web2") != 0
    assert bulkhead(lab, "c1", "identity", "get", str(web2.identity), check=False) == ""
    # c2 still has c1 (the other direction was not disconnected)
    assert curl(lab, "cli2", "web2") == 0
