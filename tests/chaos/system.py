"""The system under test: a 3-member etcd in containers, two control-plane replicas, two nodes
with agents on the real datapath, a server pod and two client pods (one on each node), and the
fault injectors' handles on all of them. Everything is removed on exit, and what is left over
(processes, namespaces, containers, pins) is reported as an anomaly."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from integration.etcd_containers import EtcdCluster, etcd_cluster
from tests.agent import cluster
from tests.agent.cluster import Cluster, Pod

PROBER = Path(__file__).resolve().parent / "prober.py"
SERVER_LABEL = "k8s:app=chaos-server"
CLIENT_LABEL = "k8s:app=chaos-client"
CP_ARGS = ("--identity-gc-grace", "3600")
"""Identities are not collected during a run, so a label set keeps one number throughout and
the checker can hold every answer to that."""


@dataclass
class System:
    etcd: EtcdCluster
    lab: Cluster
    server: Pod
    clients: list[Pod]

    @property
    def addresses(self) -> list[str]:
        return [r.address for r in self.lab.replicas]

    def etcd_leader(self) -> int | None:
        """The index of the member that leads, from each member's own status."""
        ids: dict[int, int] = {}
        leader = 0
        for i, endpoint in enumerate(self.etcd.endpoints):
            with contextlib.suppress(OSError, ValueError, KeyError):
                request = urllib.request.Request(f"http://{endpoint}/v3/maintenance/status",
                                                 data=b"{}", method="POST")
                with urllib.request.urlopen(request, timeout=1) as response:
                    status = json.loads(response.read())
                ids[int(status["header"]["member_id"])] = i
                leader = int(status.get("leader", 0))
        return ids.get(leader)

    def start_probers(self, interval: float, timeout: float) -> list[subprocess.Popen[str]]:
        procs = []
        for client in self.clients:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", client.ns, sys.executable, str(PROBER),
                 self.server.ip, "80", str(interval), str(timeout)],
                stdout=subprocess.PIPE, text=True, start_new_session=True)
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"prober in {client.name} did not start")
            procs.append(proc)
        return procs


@contextlib.contextmanager
def running(etcd_extra: str = "") -> Iterator[System]:
    with etcd_cluster(3, etcd_extra) as etcd:
        lab = cluster.build(CP_ARGS, etcd_endpoints=etcd.endpoints, replicas=2)
        try:
            server = lab.add_pod("chaos-server", "n2", [SERVER_LABEL], serve=True)
            clients = [lab.add_pod(f"chaos-client-{short}", short, [CLIENT_LABEL])
                       for short in ("n1", "n2")]
            yield System(etcd, lab, server, clients)
        finally:
            for node in lab.nodes.values():   # a fault may have left one stopped
                if node.proc is not None and node.proc.poll() is None:
                    node.proc.send_signal(signal.SIGCONT)
            cluster.destroy(lab)


def leftovers(suffix: str) -> list[str]:
    """What a run left behind: namespaces, processes, pins carrying its suffix."""
    found = []
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"namespace {line.split()[0]}" for line in names.splitlines() if suffix in line]
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    found += [f"process {line.strip()[:120]}" for line in ps.splitlines()
              if suffix in line and "ps -eo" not in line]
    if Path(f"/sys/fs/bpf/bulkhead-test-{suffix}").exists():
        found.append(f"pins /sys/fs/bpf/bulkhead-test-{suffix}")
    return found
