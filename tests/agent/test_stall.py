"""The only control-plane replica stalls (SIGSTOP) for twice the node TTL while bpf agents hold
pods: etcd lets every node's lease expire, and the agents must put everything back.

What a user checks: the same pods with the same IPs and identities are listed again within
seconds, pods on one node never lose each other, and traffic across nodes works again.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from bulkhead.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
)
from tests.agent import cluster
from tests.agent.cluster import Cluster, Pod, probe
from tests.datapath.conftest import require_datapath

pytestmark = pytest.mark.datapath

TTL = 4
WAIT = 60.0   # an upper bound for waits, never a latency assertion


# Both directions enforced, so every packet needs the peer's identity from the ipcache.
POLICY = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: stall}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEndpoints: [{matchLabels: {app: server}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: stall-server}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
"""


def apply_policy(lab: Cluster) -> None:
    with grpc.insecure_channel(lab.cp_address) as channel:
        applied = policy_pb2_grpc.PolicyServiceStub(channel).Apply(
            policy_pb2.ApplyPoliciesRequest(yaml=POLICY), timeout=30)
        waited = subscription_pb2_grpc.SubscriptionAdminServiceStub(channel).WaitForRevision(
            subscription_pb2.WaitForRevisionRequest(revision=applied.revision,
                                                    timeout_seconds=20), timeout=30)
        assert waited.converged, waited


@pytest.fixture(scope="module")
def lab() -> Iterator[Cluster]:
    require_datapath()
    c = cluster.build(cp_args=("--node-ttl", str(TTL)))
    try:
        yield c
    finally:
        cluster.destroy(c)


def endpoints(lab: Cluster) -> dict[str, tuple[str, int]]:
    """name -> (IP, identity) as the control plane lists them."""
    with grpc.insecure_channel(lab.cp_address) as channel:
        got = admin_pb2_grpc.AdminServiceStub(channel).ListEndpoints(
            admin_pb2.ListEndpointsRequest(), timeout=10)
    return {e.name: (e.ip, e.identity) for e in got.endpoints}


class Prober(threading.Thread):
    """Probes one TCP port from one pod, again and again, recording every outcome."""

    def __init__(self, src: Pod, dst: Pod) -> None:
        super().__init__(daemon=True)
        self.src, self.dst = src, dst
        self.results: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.results.append(probe(self.src, "tcp", self.dst.ip, 80))
            time.sleep(0.2)


def test_pods_survive_a_stall_of_the_only_replica(lab: Cluster) -> None:
    server = lab.add_pod("server", "n1", ["k8s:app=server"], serve=True)
    neighbour = lab.add_pod("neighbour", "n1", ["k8s:app=client"])
    remote = lab.add_pod("remote", "n2", ["k8s:app=client"])
    apply_policy(lab)
    assert probe(remote, "tcp", server.ip, 80) == "ok"
    before = endpoints(lab)
    assert set(before) == {"server", "neighbour", "remote"}

    same_node = Prober(neighbour, server)
    same_node.start()
    assert lab.cp_proc is not None
    lab.cp_proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(2 * TTL)
    finally:
        lab.cp_proc.send_signal(signal.SIGCONT)
    # The leases expired meanwhile: the agents register their nodes again and re-create
    # their pods with the same IPs; the identities were not collected in between.
    deadline = time.monotonic() + WAIT
    while endpoints(lab) != before:
        assert time.monotonic() < deadline, f"not restored: {endpoints(lab)} != {before}"
        time.sleep(0.2)
    deadline = time.monotonic() + WAIT
    while probe(remote, "tcp", server.ip, 80) != "ok":
        assert time.monotonic() < deadline, "traffic across nodes did not come back"
        time.sleep(0.2)
    time.sleep(1.0)
    same_node.stop.set()
    same_node.join(timeout=30)
    assert len(same_node.results) > 10
    assert set(same_node.results) == {"ok"}, same_node.results
