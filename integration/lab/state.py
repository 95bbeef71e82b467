"""What a lab is made of, saved as JSON in its directory so every command (and `down`) finds it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bulkhead.defaults import DEFAULT_STATE_DIR


def labs_dir() -> Path:
    return Path(os.environ.get("BULKHEAD_STATE_DIR", DEFAULT_STATE_DIR)) / "labs"


@dataclass
class NodeState:
    name: str
    netns: str
    underlay_ip: str
    socket: str = ""
    pod_cidr: str = ""
    agent_pid: int = 0
    metrics: str = ""                 # the agent's Prometheus HOST:PORT
    cluster: str = ""                 # with `up --clusters N`: the cluster it belongs to


@dataclass
class PodState:
    name: str
    namespace: str
    node: str
    netns: str
    ip: str = ""
    identity: int = 0
    labels: list[str] = field(default_factory=list)
    server_pid: int = 0
    serve: list[str] = field(default_factory=list)
    owner: str = ""                   # "Deployment NS/NAME" for pods `apply -f` made of one


@dataclass
class ClusterState:
    """One cluster of a `up --clusters N` lab: its own etcd (run by the lab, so tests can stop
    and restart it) and control plane."""

    name: str
    id: int
    pool: str                         # pod CIDR pool, disjoint from the other clusters'
    etcd_client_port: int
    etcd_peer_port: int
    etcd_pid: int = 0
    server: str = ""                  # the control plane's HOST:PORT
    pid: int = 0

    @property
    def etcd(self) -> str:
        return f"127.0.0.1:{self.etcd_client_port}"


@dataclass
class LabState:
    name: str
    datapath: str
    prefix: str                       # every namespace of the lab starts with it
    underlay_netns: str
    controlplane: str = ""            # HOST:PORT
    controlplane_pid: int = 0
    pin_root: str = ""
    nodes: dict[str, NodeState] = field(default_factory=dict)
    pods: dict[str, PodState] = field(default_factory=dict)
    clusters: dict[str, ClusterState] = field(default_factory=dict)
    world_pids: list[int] = field(default_factory=list)  # `up --world`: its servers (world.py)

    @property
    def directory(self) -> Path:
        return labs_dir() / self.name

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / "lab.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        tmp.replace(self.directory / "lab.json")

    @staticmethod
    def load(name: str) -> LabState | None:
        path = labs_dir() / name / "lab.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["nodes"] = {k: NodeState(**v) for k, v in data["nodes"].items()}
        data["pods"] = {k: PodState(**v) for k, v in data["pods"].items()}
        data["clusters"] = {k: ClusterState(**v) for k, v in data.get("clusters", {}).items()}
        return LabState(**data)
