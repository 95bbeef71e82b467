"""`bulkhead-lab up --clusters N`: clusters c1..cN, each with its own etcd (run by the lab, so a
test can stop and restart a remote cluster's etcd) and its own control plane (cluster id k,
pod pool 10.k.0.0/16), their nodes on the lab's one underlay, connected both ways
(`bulkhead clustermesh connect` from every cluster to every other).

Each cluster is secured like a single-cluster lab (integration.lab.credentials): its control
plane keeps its own CA and admin credential in `controlplane-c<k>/tls`, its agents join it with
tokens bound to their nodes, and its etcd requires client certificates of an etcd CA of its own
(`controlplane-c<k>/tls/etcd`, made by controlplane.pki.etcdtls). Each remote cluster's
syncer gets that CA and a client certificate of its own (CN `clustermesh-<local cluster>`)
through `clustermesh connect`.

Nodes are keyed `c<k>/n<i>` in the lab state (the node is named `n<i>` in its own cluster);
node `i` of cluster `k` has underlay address `.(k-1)*NODES_PER_CLUSTER + i`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import ssl
import sys
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Protocol

import grpc

from bulkhead.v1 import clustermesh_pb2, clustermesh_pb2_grpc
from controlplane.clustermesh import access
from controlplane.pki import etcdtls
from controlplane.store.embedded import EmbeddedTls, etcd_argv, free_port
from controlplane.store.etcd import Etcd

from . import credentials, processes
from .state import ClusterState, LabState, NodeState


class Lab(Protocol):
    """What this module needs of integration.lab.lab.Lab (which imports this module)."""

    say: Callable[[str], None]

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str, log: Path,
              pid: int) -> None: ...

    def _start_agent(self, state: LabState, node: NodeState) -> None: ...

    def attach(self, state: LabState, node: NodeState, index: int) -> None: ...

    def underlay_ip(self, index: int) -> str: ...


MAX_CLUSTERS = 4
NODES_PER_CLUSTER = 50


def node_key(cluster: str, node: str) -> str:
    return f"{cluster}/{node}"


def cluster_names(count: int) -> list[str]:
    return [f"c{k}" for k in range(1, count + 1)]


def plan(state: LabState, count: int) -> None:
    """The clusters' names, ids, pools and etcd ports (kept across `up` runs)."""
    for k, name in enumerate(cluster_names(count), start=1):
        if name not in state.clusters:
            state.clusters[name] = ClusterState(name, k, f"10.{k}.0.0/16", free_port(),
                                                free_port())


def underlay_index(cluster: ClusterState, i: int) -> int:
    return (cluster.id - 1) * NODES_PER_CLUSTER + i


def etcd_tls(state: LabState, cluster: ClusterState) -> EmbeddedTls:
    """The cluster's etcd CA, serving and control-plane client certificates, in its control
    plane's state dir (as an embedded etcd's)."""
    return etcdtls.ensure(credentials.controlplane_dir(state, cluster.name))


def start_etcd(lab: Lab, state: LabState, cluster: ClusterState) -> None:
    """The cluster's etcd on its ports and data dir (again after `stop_etcd`), HTTPS with
    client-certificate auth."""
    if cluster.etcd_pid and processes.alive(cluster.etcd_pid):
        return
    binary = shutil.which("etcd") or "/usr/bin/etcd"
    data = state.directory / f"etcd-{cluster.name}"
    tls = etcd_tls(state, cluster)
    lab.say(f"cluster {cluster.name}: etcd on {cluster.etcd} (client certificates)")
    cluster.etcd_pid = processes.start(
        etcd_argv(binary, cluster.name, data, cluster.etcd_client_port, cluster.etcd_peer_port,
                  compaction_retention="1h", max_txn_ops=4096, tls=tls),
        state.directory / f"etcd-{cluster.name}.log")
    state.save()
    lab._wait(lambda: _etcd_healthy(cluster, tls), 30, f"etcd of {cluster.name}",
              state.directory / f"etcd-{cluster.name}.log", cluster.etcd_pid)
    # As the control plane does for an embedded etcd: its certificate root, remotes read-only.
    _as_controlplane(state, cluster, functools.partial(
        access.secure, cluster=cluster.name,
        state_dir=credentials.controlplane_dir(state, cluster.name)))


def _as_controlplane(state: LabState, cluster: ClusterState,
                     action: Callable[[Etcd], Awaitable[None]]) -> None:
    """Runs `action` on the cluster's etcd with its control plane's client certificate (the
    one etcd's auth makes root)."""
    async def run() -> None:
        etcd = Etcd([cluster.etcd], tls=etcd_tls(state, cluster).client(), timeout=10.0)
        try:
            await action(etcd)
        finally:
            await etcd.close()

    asyncio.run(run())


def stop_etcd(state: LabState, cluster: ClusterState) -> None:
    processes.stop(cluster.etcd_pid)
    cluster.etcd_pid = 0
    state.save()


def _etcd_healthy(cluster: ClusterState, tls: EmbeddedTls) -> bool:
    context = ssl.create_default_context(cafile=str(tls.ca))
    context.load_cert_chain(str(tls.client_cert), str(tls.client_key))
    try:
        with urllib.request.urlopen(f"https://{cluster.etcd}/health", timeout=1,
                                    context=context) as response:
            return b"true" in response.read()
    except OSError:
        return False


def start_controlplane(lab: Lab, state: LabState, cluster: ClusterState) -> None:
    if cluster.pid and processes.alive(cluster.pid):
        return
    port = int(cluster.server.rsplit(":", 1)[1]) if cluster.server else free_port()
    cp_dir = credentials.controlplane_dir(state, cluster.name)
    etcd = etcd_tls(state, cluster).client()
    port_file = cp_dir / "port"
    port_file.unlink(missing_ok=True)
    cp_dir.mkdir(parents=True, exist_ok=True)
    log = state.directory / f"controlplane-{cluster.name}.log"
    lab.say(f"cluster {cluster.name} (id {cluster.id}): control plane on 127.0.0.1:{port}")
    cluster.pid = processes.start(
        [_bin("bulkhead-controlplane"), "--state-dir", str(cp_dir),
         "--listen", f"127.0.0.1:{port}", "--replica-id", f"lab-{state.name}-{cluster.name}",
         "--etcd-endpoints", cluster.etcd, "--etcd-cacert", str(etcd.cacert),
         "--etcd-cert", str(etcd.cert), "--etcd-key", str(etcd.key),
         "--cluster-name", cluster.name,
         "--cluster-id", str(cluster.id), "--cluster-pool", cluster.pool,
         "--port-file", str(port_file)], log)
    cluster.server = f"127.0.0.1:{port}"
    state.save()
    lab._wait(lambda: port_file.exists(), 30, f"the control plane of {cluster.name} to serve",
              log, cluster.pid)


def _bin(name: str) -> str:
    found = Path(sys.executable).parent / name
    return str(found) if found.exists() else (shutil.which(name) or name)


@contextlib.contextmanager
def stub(state: LabState,
         cluster: ClusterState) -> Iterator[clustermesh_pb2_grpc.ClusterMeshServiceStub]:
    """Cluster `cluster`'s clustermesh API, with that cluster's admin credential."""
    with credentials.channel(state, cluster.name) as channel:
        yield clustermesh_pb2_grpc.ClusterMeshServiceStub(channel)


def connect_request(state: LabState, local: ClusterState,
                    remote: ClusterState) -> clustermesh_pb2.ConnectClusterRequest:
    """`local` connecting `remote`: its etcd's endpoint and CA, and a client certificate of
    that CA for `local`'s syncer (CN `clustermesh-<local>`), which `remote`'s etcd lets read
    what a syncer reads and nothing else (controlplane.clustermesh.access)."""
    user = f"clustermesh-{local.name}"
    files = etcdtls.client(credentials.controlplane_dir(state, remote.name), user)
    _as_controlplane(state, remote, lambda etcd: access.allow_remote(etcd, remote.name, user))
    assert files.cacert and files.cert and files.key
    return clustermesh_pb2.ConnectClusterRequest(
        name=remote.name, etcd_endpoints=[remote.etcd], etcd_cacert=files.cacert.read_text(),
        etcd_cert=files.cert.read_text(), etcd_key=files.key.read_text())


def connect_all(lab: Lab, state: LabState, timeout: float = 90.0) -> None:
    """Every cluster connected to every other, then waits until each one has every remote
    in sync and all its nodes have every remote's state."""
    clusters = list(state.clusters.values())
    for local in clusters:
        with stub(state, local) as api:
            have = {r.cluster.name for r in api.Status(
                clustermesh_pb2.ClusterMeshStatusRequest(), timeout=10).remotes}
            for remote in clusters:
                if remote is local or remote.name in have:
                    continue
                lab.say(f"cluster {local.name}: connecting {remote.name}")
                api.Connect(connect_request(state, local, remote), timeout=30)
    for local in clusters:
        lab._wait(functools.partial(meshed, state, local, len(clusters) - 1), timeout,
                  f"cluster {local.name} to sync every remote cluster",
                  state.directory / f"controlplane-{local.name}.log", local.pid)


def meshed(state: LabState, cluster: ClusterState, remotes: int) -> bool:
    """Every remote ready and every local node has every remote's state."""
    try:
        with stub(state, cluster) as api:
            status = api.Status(clustermesh_pb2.ClusterMeshStatusRequest(), timeout=5)
    except grpc.RpcError:
        return False
    return (len(status.remotes) == remotes and all(r.ready for r in status.remotes)
            and status.nodes_with_all_remotes == status.nodes)


def up(lab: Lab, state: LabState, nodes: int, count: int) -> None:
    plan(state, count)
    for cluster in state.clusters.values():
        start_etcd(lab, state, cluster)
        start_controlplane(lab, state, cluster)
    for cluster in state.clusters.values():
        for i in range(1, nodes + 1):
            key = node_key(cluster.name, f"n{i}")
            index = underlay_index(cluster, i)
            node = state.nodes.get(key) or NodeState(
                f"n{i}", f"{state.prefix}{cluster.name}-n{i}", lab.underlay_ip(index),
                cluster=cluster.name)
            state.nodes[key] = node
            lab.attach(state, node, index)
    for node in state.nodes.values():
        lab._start_agent(state, node)
    connect_all(lab, state)
    credentials.publish(state)


def stop(lab: Lab, state: LabState) -> None:
    for cluster in state.clusters.values():
        if cluster.pid:
            lab.say(f"stopping control plane of {cluster.name}")
        processes.stop(cluster.pid)
        processes.stop(cluster.etcd_pid)


def server_of(state: LabState, node: NodeState) -> str:
    cluster = state.clusters.get(node.cluster)
    return cluster.server if cluster is not None else state.controlplane


def pin_root_of(state: LabState, node: NodeState) -> str:
    """Each cluster's nodes pin under their own directory (both clusters have an `n1`)."""
    return str(Path(state.pin_root) / node.cluster) if node.cluster else state.pin_root

