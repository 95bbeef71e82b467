"""Clustermesh against two real etcds and two control planes: a remote cluster's nodes,
ipcache entries and identities mirrored into the local etcd and delivered to a (simulated)
local agent; conflicts refused; a remote outage keeps the last-known state; disconnect
removes everything remote."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import tempfile
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from bulkhead.rpcerror import field_violations
from bulkhead.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    clustermesh_pb2,
    clustermesh_pb2_grpc,
    endpoint_pb2,
    endpoint_pb2_grpc,
    flow_pb2,
    identity_pb2,
    identity_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    service_pb2,
    service_pb2_grpc,
    types_pb2,
)
from controlplane import metrics
from controlplane.callers import ADMIN
from controlplane.clustermesh import access
from controlplane.config import Config
from controlplane.pki import etcdtls
from controlplane.pki.certs import CA, cert_pem, key_pem, new_key
from controlplane.records.codec import IPCacheEntry
from controlplane.server import metrics_sources
from controlplane.store.embedded import free_port
from controlplane.store.keys import Keys
from integration.etcd_process import EtcdProcess, etcd_process
from integration.subscription.conftest import Agent, eventually
from tests.conftest import Replica, start_replica, start_replica_on
from tests.test_cli import bulkhead


@pytest.fixture
def remote_etcd() -> Iterator[EtcdProcess]:
    """The remote cluster's own etcd (stopped and restarted by the outage test)."""
    with etcd_process() as server:
        yield server


class Mesh:
    """Control planes of several clusters, each on the etcd it is given."""

    def __init__(self) -> None:
        self.started: list[Replica] = []
        self.agents: list[Agent] = []

    async def cluster(self, etcd: EtcdProcess, cluster_id: int, pool: str,
                      name: str | None = None, **overrides: object) -> Replica:
        config = Config(etcd_endpoints=[etcd.endpoint],
                        cluster_name=name or f"c{uuid.uuid4().hex[:8]}", cluster_id=cluster_id,
                        cluster_pool=pool, state_dir=Path(tempfile.gettempdir()),
                        **overrides)  # type: ignore[arg-type]
        replica = await start_replica(config)
        self.started.append(replica)
        return replica

    async def agent(self, replica: Replica, node: str) -> Agent:
        agent = Agent(node, [replica.address], "192.0.2.200")
        self.agents.append(agent)
        return await agent.start()


@pytest.fixture
async def mesh() -> AsyncIterator[Mesh]:
    m = Mesh()
    yield m
    for agent in m.agents:
        await agent.stop()
    for replica in m.started:
        try:
            await replica.stop()
        except Exception:   # a replica whose etcd a test stopped: stop the rest anyway
            pass


def mesh_stub(replica: Replica) -> clustermesh_pb2_grpc.ClusterMeshServiceStub:
    return clustermesh_pb2_grpc.ClusterMeshServiceStub(replica.channel())


async def connect(local: Replica, remote: Replica,
                  etcd: EtcdProcess) -> clustermesh_pb2.RemoteCluster:
    return await mesh_stub(local).Connect(clustermesh_pb2.ConnectClusterRequest(
        name=remote.cp.config.cluster_name, etcd_endpoints=[etcd.endpoint]))


async def status_of(local: Replica, name: str) -> clustermesh_pb2.RemoteClusterStatus:
    status = await mesh_stub(local).Status(clustermesh_pb2.ClusterMeshStatusRequest())
    return next(r for r in status.remotes if r.cluster.name == name)


async def workload(replica: Replica, node: str, ip: str, name: str,
                   labels: list[str]) -> types_pb2.Endpoint:
    channel = replica.channel()
    await node_pb2_grpc.NodeServiceStub(channel).Register(
        node_pb2.RegisterNodeRequest(name=node, underlay_ip=ip))
    return await endpoint_pb2_grpc.EndpointServiceStub(channel).Create(
        endpoint_pb2.CreateEndpointRequest(node=node, namespace="default", name=name,
                                           labels=labels))


async def test_remote_state_reaches_local_agents_and_disconnect_removes_it(
        etcd: EtcdProcess, remote_etcd: EtcdProcess, mesh: Mesh) -> None:
    local = await mesh.cluster(etcd, 1, "10.1.0.0/16")
    remote = await mesh.cluster(remote_etcd, 2, "10.2.0.0/16")
    name = remote.cp.config.cluster_name
    xwing = await workload(remote, "r1", "192.0.2.2", "xwing", ["k8s:org=alliance"])
    agent = await mesh.agent(local, "l1")

    connected = await connect(local, remote, remote_etcd)
    assert (connected.name, connected.cluster_id, connected.pod_pool) == (name, 2, "10.2.0.0/16")

    state = agent.client.state
    remote_node = f"{name}/r1"   # as in Cilium: never mistaken for a local node r1
    await eventually(lambda: remote_node in state.nodes and f"{xwing.ip}/32" in state.ipcache
                     and xwing.identity in state.identities,
                     "remote node, ipcache entry and identity never reached the local agent")
    assert state.nodes[remote_node].cluster == name
    await node_pb2_grpc.NodeServiceStub(local.channel()).Register(
        node_pb2.RegisterNodeRequest(name="r1", underlay_ip="192.0.2.9"))   # a local r1
    await eventually(lambda: "r1" in state.nodes, "the local node r1 never arrived")
    assert state.nodes[remote_node].underlay_ip == "192.0.2.2"
    assert state.nodes["r1"].cluster == local.cp.config.cluster_name
    entry = state.ipcache[f"{xwing.ip}/32"]
    assert (entry.identity, entry.node, entry.cluster, entry.tunnel.ip) == (
        xwing.identity, remote_node, name, "192.0.2.2")     # the identity keeps its number
    assert sorted(state.identities[xwing.identity].labels) == [
        f"k8s:io.cilium.k8s.policy.cluster={name}", "k8s:org=alliance"]

    async def ready() -> bool:
        s = await status_of(local, name)
        return s.ready and (s.nodes, s.endpoints, s.identities) == (1, 1, 1)
    await eventually(ready, "status never ready with 1 node, 1 endpoint, 1 identity")

    async def l1_has_it() -> bool:   # l1's agent acked the mirror; the local r1 has no agent
        s = await mesh_stub(local).Status(clustermesh_pb2.ClusterMeshStatusRequest())
        return (s.nodes, s.nodes_with_all_remotes) == (2, 1)
    await eventually(l1_has_it, "status never said 1 of 2 nodes has the remote's state")
    rc, out, _ = await bulkhead(local.address, "clustermesh", "status")
    assert rc == 0, out
    assert "1/1 remote clusters ready; 1/2 nodes are connected to all clusters" in out, out
    assert (await status_of(local, name)).nodes_synced == 1
    # the admin lists show the remote's nodes and ipcache entries as agents get them
    admin = admin_pb2_grpc.AdminServiceStub(local.channel())
    nodes = (await admin.ListNodes(admin_pb2.ListNodesRequest())).nodes
    assert sorted((n.name, n.cluster) for n in nodes) == sorted([
        ("l1", local.cp.config.cluster_name), ("r1", local.cp.config.cluster_name),
        (remote_node, name)])
    entries = (await admin.ListIPCache(admin_pb2.ListIPCacheRequest(node=remote_node))).entries
    assert [(e.prefix, e.identity, e.cluster) for e in entries] == [
        (f"{xwing.ip}/32", xwing.identity, name)]
    got = await identity_pb2_grpc.IdentityServiceStub(local.channel()).Get(
        identity_pb2.GetIdentityRequest(id=xwing.identity))
    assert f"k8s:io.cilium.k8s.policy.cluster={name}" in got.labels
    listed = (await admin.ListIdentities(admin_pb2.ListIdentitiesRequest(
        label_selector=[f"io.cilium.k8s.policy.cluster={name}"]))).identities
    assert [i.id for i in listed] == [xwing.identity]
    # flows from the remote pod name its identity's labels (never world)
    flow = local.cp.enricher.enrich(flow_pb2.Flow(
        source=flow_pb2.FlowPeer(ip=xwing.ip, identity=xwing.identity)))
    assert f"k8s:io.cilium.k8s.policy.cluster={name}" in flow.source.labels

    # a change in the remote arrives
    ywing = await workload(remote, "r1", "192.0.2.2", "ywing", ["k8s:org=alliance",
                                                                "k8s:class=ywing"])
    await eventually(lambda: f"{ywing.ip}/32" in state.ipcache
                     and ywing.identity in state.identities, "a later remote change never arrived")

    await mesh_stub(local).Disconnect(clustermesh_pb2.DisconnectClusterRequest(name=name))
    await eventually(lambda: remote_node not in state.nodes
                     and f"{xwing.ip}/32" not in state.ipcache
                     and xwing.identity not in state.identities
                     and ywing.identity not in state.identities,
                     "disconnect left remote state on the agent")
    keys = Keys(local.cp.config.cluster_name)
    kvs, _, _ = await local.cp.etcd.range(keys.mesh_mirror(name))
    assert kvs == []
    status = await mesh_stub(local).Status(clustermesh_pb2.ClusterMeshStatusRequest())
    assert list(status.remotes) == []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mesh_stub(local).Disconnect(clustermesh_pb2.DisconnectClusterRequest(name=name))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def refused(local: Replica, name: str, etcd: EtcdProcess) -> list[str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mesh_stub(local).Connect(clustermesh_pb2.ConnectClusterRequest(
            name=name, etcd_endpoints=[etcd.endpoint]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return [f"{v.field}: {v.description}" for v in field_violations(err.value)]


async def test_conflicting_clusters_are_refused_naming_the_conflict(
        etcd: EtcdProcess, remote_etcd: EtcdProcess, mesh: Mesh) -> None:
    local = await mesh.cluster(etcd, 1, "10.1.0.0/16")
    local_name = local.cp.config.cluster_name
    same_id = await mesh.cluster(remote_etcd, 1, "10.3.0.0/16")
    overlapping = await mesh.cluster(remote_etcd, 4, "10.1.128.0/17")
    same_name = await mesh.cluster(remote_etcd, 5, "10.5.0.0/16", name=local_name)
    good = await mesh.cluster(remote_etcd, 2, "10.2.0.0/16")
    twin = await mesh.cluster(remote_etcd, 2, "10.6.0.0/16")

    problems = await refused(local, same_id.cp.config.cluster_name, remote_etcd)
    assert any(p.startswith("cluster_id:") and f"local cluster {local_name}" in p
               for p in problems), problems
    problems = await refused(local, overlapping.cp.config.cluster_name, remote_etcd)
    assert any(p.startswith("pod_cidr:") and "10.1.128.0/17" in p and "10.1.0.0/16" in p
               for p in problems), problems
    problems = await refused(local, same_name.cp.config.cluster_name, remote_etcd)
    assert any(p.startswith("name:") and "local cluster" in p for p in problems), problems
    problems = await refused(local, "nosuchcluster", remote_etcd)
    assert any(p.startswith("name:") and "holds no cluster" in p for p in problems), problems

    await connect(local, good, remote_etcd)
    problems = await refused(local, good.cp.config.cluster_name, remote_etcd)
    assert any("already connected" in p for p in problems), problems
    problems = await refused(local, twin.cp.config.cluster_name, remote_etcd)
    assert any(p.startswith("cluster_id:") and f"connected cluster {good.cp.config.cluster_name}"
               in p for p in problems), problems
    status = await mesh_stub(local).Status(clustermesh_pb2.ClusterMeshStatusRequest())
    assert [r.cluster.name for r in status.remotes] == [good.cp.config.cluster_name]


async def test_remote_outage_keeps_last_known_state_and_catches_up(
        etcd: EtcdProcess, remote_etcd: EtcdProcess, mesh: Mesh) -> None:
    local = await mesh.cluster(etcd, 1, "10.1.0.0/16")
    remote = await mesh.cluster(remote_etcd, 2, "10.2.0.0/16")
    name = remote.cp.config.cluster_name
    xwing = await workload(remote, "r1", "192.0.2.2", "xwing", ["k8s:org=alliance"])
    agent = await mesh.agent(local, "l1")
    await connect(local, remote, remote_etcd)

    async def ready() -> bool:
        return (await status_of(local, name)).ready
    await eventually(ready, "never ready")

    async def l1_synced(count: int) -> bool:
        s = await mesh_stub(local).Status(clustermesh_pb2.ClusterMeshStatusRequest())
        return s.nodes_with_all_remotes == count and s.remotes[0].nodes_synced == count
    await eventually(lambda: l1_synced(1), "l1 never had the remote's state")

    remote_etcd.stop()

    async def not_ready() -> bool:
        s = await status_of(local, name)
        return not s.ready and s.failures >= 1 and s.last_error != ""
    await eventually(not_ready, "status still ready with the remote etcd stopped")
    state = agent.client.state
    assert f"{name}/r1" in state.nodes and f"{xwing.ip}/32" in state.ipcache \
        and xwing.identity in state.identities, "last-known remote state was dropped"
    s = await status_of(local, name)
    assert (s.nodes, s.endpoints, s.identities) == (1, 1, 1)
    # a remote out of sync is no node's: its state may be stale
    assert s.nodes_synced == 0 and await l1_synced(0)
    rc, out, _ = await bulkhead(local.address, "clustermesh", "status")
    assert rc == 0, out
    assert "0/1 nodes are connected to all clusters" in out, out

    remote_etcd.start()
    ywing = await workload(remote, "r1", "192.0.2.2", "ywing", ["k8s:org=alliance",
                                                                "k8s:class=ywing"])
    await eventually(lambda: f"{ywing.ip}/32" in state.ipcache
                     and ywing.identity in state.identities,
                     "a change made during the outage never arrived")
    await eventually(ready, "never ready again after the remote etcd came back")
    await eventually(lambda: l1_synced(1), "l1 never had the remote's state again")
    rc, out, _ = await bulkhead(local.address, "clustermesh", "status")
    assert rc == 0, out
    assert "all 1 nodes are connected to all clusters" in out, out


async def test_restarted_syncer_relists_after_remote_compaction(
        etcd: EtcdProcess, remote_etcd: EtcdProcess, mesh: Mesh) -> None:
    local = await mesh.cluster(etcd, 1, "10.1.0.0/16")
    remote = await mesh.cluster(remote_etcd, 2, "10.2.0.0/16")
    name = remote.cp.config.cluster_name
    xwing = await workload(remote, "r1", "192.0.2.2", "xwing", ["k8s:org=alliance"])
    await connect(local, remote, remote_etcd)

    async def synced_one() -> bool:
        s = await status_of(local, name)
        return s.ready and s.endpoints == 1
    await eventually(synced_one, "never synced")
    await local.stop()
    mesh.started.remove(local)

    # while no syncer runs: one endpoint goes, one comes, and the remote compacts its history
    endpoints = endpoint_pb2_grpc.EndpointServiceStub(remote.channel())
    await endpoints.Delete(endpoint_pb2.DeleteEndpointRequest(namespace="default",
                                                              name="xwing"))
    ywing = await workload(remote, "r1", "192.0.2.2", "ywing", ["k8s:class=ywing"])
    await remote.cp.etcd.compact((await remote.cp.etcd.status()).revision)

    again = await mesh.cluster(etcd, 1, "10.1.0.0/16", name=local.cp.config.cluster_name)
    keys = Keys(again.cp.config.cluster_name)
    mirror = keys.mesh_mirror(name)

    async def relisted() -> bool:
        kvs, _, _ = await again.cp.etcd.range(mirror + "ipcache/")
        return [(kv.key, IPCacheEntry.decode(kv.value).identity) for kv in kvs] == [
            (f"{mirror}ipcache/{ywing.ip}_32", ywing.identity)]
    await eventually(relisted, "the mirror was not relisted after the remote compacted")
    assert xwing.identity != ywing.identity


async def test_cli_connect_status_and_disconnect(
        etcd: EtcdProcess, remote_etcd: EtcdProcess, mesh: Mesh) -> None:
    local = await mesh.cluster(etcd, 1, "10.1.0.0/16")
    remote = await mesh.cluster(remote_etcd, 2, "10.2.0.0/16")
    twin = await mesh.cluster(remote_etcd, 2, "10.3.0.0/16")
    name = remote.cp.config.cluster_name
    await workload(remote, "r1", "192.0.2.2", "xwing", ["k8s:org=alliance"])

    rc, out, _ = await bulkhead(local.address, "status")
    assert rc == 0 and "ClusterMesh:     disabled (no remote cluster connected)" in out, out
    rc, out, err = await bulkhead(local.address, "clustermesh", "connect", name,
                                  "--etcd-endpoints", remote_etcd.endpoint)
    assert rc == 0, err
    assert out.strip() == f"connected cluster {name} (id 2, pod pool 10.2.0.0/16)"

    async def ready() -> bool:
        rc, out, _ = await bulkhead(local.address, "clustermesh", "status", "-o", "json")
        remotes = json.loads(out)["remotes"]
        return rc == 0 and len(remotes) == 1 and remotes[0]["ready"] \
            and (remotes[0]["nodes"], remotes[0]["endpoints"], remotes[0]["identities"]) \
            == (1, 1, 1) and remotes[0]["cluster"]["name"] == name
    await eventually(ready, "clustermesh status -o json never showed the remote ready")
    rc, out, _ = await bulkhead(local.address, "clustermesh", "status")
    assert rc == 0 and "1/1 remote clusters ready" in out and name in out, out
    rc, out, _ = await bulkhead(local.address, "status")
    assert "ClusterMesh:     1/1 remote clusters ready" in out, out
    rc, out, _ = await bulkhead(local.address, "status", "-o", "json")
    assert [(r["cluster"]["name"], r["ready"]) for r in json.loads(out)["clustermesh"]["remotes"]] \
        == [(name, True)]

    twin_name = twin.cp.config.cluster_name
    rc, out, err = await bulkhead(local.address, "clustermesh", "connect", twin_name,
                                  "--etcd-endpoints", remote_etcd.endpoint)
    assert rc == 1 and out == ""
    assert err.startswith("bulkhead: INVALID_ARGUMENT"), err
    assert f"cluster_id: cluster {twin_name} has id 2, the id of connected cluster {name}" \
        in err, err

    rc, out, err = await bulkhead(local.address, "clustermesh", "disconnect", name,
                                  "-o", "json")
    assert rc == 0 and json.loads(out) == {"disconnected": name}, err
    rc, out, _ = await bulkhead(local.address, "clustermesh", "status", "-o", "json")
    assert json.loads(out)["remotes"] == []


async def test_one_syncer_among_replicas_and_it_moves_when_its_replica_stops(
        etcd: EtcdProcess, remote_etcd: EtcdProcess, mesh: Mesh) -> None:
    first = await mesh.cluster(etcd, 1, "10.1.0.0/16")
    second = await mesh.cluster(etcd, 1, "10.1.0.0/16", name=first.cp.config.cluster_name)
    remote = await mesh.cluster(remote_etcd, 2, "10.2.0.0/16")
    name = remote.cp.config.cluster_name
    await workload(remote, "r1", "192.0.2.2", "xwing", ["k8s:org=alliance"])
    await connect(first, remote, remote_etcd)

    async def synced(replica: Replica, endpoints: int) -> bool:
        s = await status_of(replica, name)
        return s.ready and s.endpoints == endpoints
    await eventually(lambda: synced(first, 1), "never synced")
    leaders = [r for r in (first, second) if r.cp.mesh.leading() == [name]]
    assert len(leaders) == 1, "exactly one replica must sync the remote"
    leader = leaders[0]
    other = second if leader is first else first
    assert (await status_of(other, name)).syncer == leader.cp.config.replica_id

    await leader.stop()
    mesh.started.remove(leader)
    await workload(remote, "r1", "192.0.2.2", "ywing", ["k8s:org=alliance"])
    await eventually(lambda: synced(other, 2), "the other replica never took the syncer over")
    assert other.cp.mesh.leading() == [name]
    assert (await status_of(other, name)).syncer == other.cp.config.replica_id


NS = "k8s:io.kubernetes.pod.namespace=default"   # what a namespaced policy's selectors need
CROSS_CLUSTER_POLICY = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: rebels-from-{remote}
  namespace: default
spec:
  endpointSelector:
    matchLabels:
      org: empire
  ingress:
  - fromEndpoints:
    - matchLabels:
        org: alliance
        io.cilium.k8s.policy.cluster: {remote}
    toPorts:
    - ports:
      - port: "80"
        protocol: TCP
"""


async def test_a_policy_selects_remote_peers_by_cluster(
        etcd: EtcdProcess, remote_etcd: EtcdProcess, mesh: Mesh) -> None:
    local = await mesh.cluster(etcd, 1, "10.1.0.0/16")
    remote = await mesh.cluster(remote_etcd, 2, "10.2.0.0/16")
    name = remote.cp.config.cluster_name
    remote_xwing = await workload(remote, "r1", "192.0.2.2", "xwing", [NS, "k8s:org=alliance"])
    agent = await mesh.agent(local, "l1")
    deathstar = await workload(local, "l1", "192.0.2.200", "deathstar", [NS, "k8s:org=empire"])
    local_xwing = await workload(local, "l1", "192.0.2.200", "xwing", [NS, "k8s:org=alliance"])
    await policy_pb2_grpc.PolicyServiceStub(local.channel()).Apply(
        policy_pb2.ApplyPoliciesRequest(yaml=CROSS_CLUSTER_POLICY.format(remote=name)))
    await connect(local, remote, remote_etcd)

    def peers() -> set[int]:
        resolved = agent.client.state.policies.get(deathstar.identity)
        return set() if resolved is None else {e.peer for e in resolved.entries}
    await eventually(lambda: remote_xwing.identity in peers(),
                     "the agent's policy never allowed the remote cluster's xwing")
    assert local_xwing.identity not in peers(), "the policy names the remote cluster only"
    resolved = await policy_pb2_grpc.PolicyServiceStub(local.channel()).Resolve(
        policy_pb2.ResolvePolicyRequest(identity=deathstar.identity))
    assert {(e.peer, e.port_lo) for e in resolved.entries if e.direction == "ingress"} == {
        (remote_xwing.identity, 80)}

    await mesh_stub(local).Disconnect(clustermesh_pb2.DisconnectClusterRequest(name=name))
    await eventually(lambda: remote_xwing.identity not in peers(),
                     "a disconnected cluster's identity stayed in the agent's policy")


async def test_metrics_per_remote_cluster(
        etcd: EtcdProcess, remote_etcd: EtcdProcess, mesh: Mesh) -> None:
    local = await mesh.cluster(etcd, 1, "10.1.0.0/16")
    remote = await mesh.cluster(remote_etcd, 2, "10.2.0.0/16")
    name = remote.cp.config.cluster_name
    await workload(remote, "r1", "192.0.2.2", "xwing", ["k8s:org=alliance"])
    port = free_port()
    server = metrics.serve(metrics_sources(local.cp), f"127.0.0.1:{port}")
    try:
        await connect(local, remote, remote_etcd)

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                return str(r.read().decode())

        async def ready() -> bool:
            text = await asyncio.to_thread(scrape)
            return f'bulkhead_clustermesh_remote_ready{{cluster="{name}"}} 1.0' in text \
                and f'bulkhead_clustermesh_remote_objects{{cluster="{name}",kind="endpoints"}}' \
                    ' 1.0' in text
        await eventually(ready, "metrics never showed the remote ready with its endpoint")
        assert f'bulkhead_clustermesh_remote_failures_total{{cluster="{name}"}} 0.0' \
            in await asyncio.to_thread(scrape)
    finally:
        server.shutdown()


async def test_cache_ttl_drops_the_state_of_a_remote_out_of_sync_that_long(
        etcd: EtcdProcess, remote_etcd: EtcdProcess, mesh: Mesh) -> None:
    local = await mesh.cluster(etcd, 1, "10.1.0.0/16", clustermesh_cache_ttl=1.0)
    remote = await mesh.cluster(remote_etcd, 2, "10.2.0.0/16")
    name = remote.cp.config.cluster_name
    xwing = await workload(remote, "r1", "192.0.2.2", "xwing", ["k8s:org=alliance"])
    agent = await mesh.agent(local, "l1")
    await connect(local, remote, remote_etcd)
    state = agent.client.state
    await eventually(lambda: xwing.identity in state.identities, "never synced")

    remote_etcd.stop()
    await eventually(lambda: xwing.identity not in state.identities
                     and f"{xwing.ip}/32" not in state.ipcache
                     and f"{name}/r1" not in state.nodes,
                     "the remote's state outlived --clustermesh-cache-ttl")
    s = await status_of(local, name)
    assert not s.ready and (s.nodes, s.endpoints, s.identities) == (0, 0, 0)

    remote_etcd.start()
    await eventually(lambda: xwing.identity in state.identities
                     and f"{xwing.ip}/32" in state.ipcache,
                     "the remote's state never came back once it was reachable again")


@pytest.fixture
def tls_etcd(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An etcd serving clients over mutual TLS only: its https endpoint, and the directory
    holding ca.pem, client.pem and client-key.pem."""
    ca = CA.create("etcd")
    for name, server in (("server", ["127.0.0.1"]), ("client", [])):
        key = new_key()
        cert = ca.issue(key.public_key(), name, ADMIN, server_names=server)
        (tmp_path / f"{name}.pem").write_bytes(cert_pem(cert))
        (tmp_path / f"{name}-key.pem").write_bytes(key_pem(key))
    (tmp_path / "ca.pem").write_bytes(cert_pem(ca.cert))
    client, peer = free_port(), free_port()
    url, peer_url = f"https://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    process = subprocess.Popen(
        ["etcd", "--name", "t", "--data-dir", str(tmp_path / "data"),
         "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
         "--initial-cluster", f"t={peer_url}", "--client-cert-auth",
         "--trusted-ca-file", str(tmp_path / "ca.pem"),
         "--cert-file", str(tmp_path / "server.pem"),
         "--key-file", str(tmp_path / "server-key.pem")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield url, tmp_path
    finally:
        process.terminate()
        process.wait(10)


async def test_a_remote_etcd_over_mutual_tls(
        etcd: EtcdProcess, tls_etcd: tuple[str, Path], mesh: Mesh) -> None:
    url, files = tls_etcd
    local = await mesh.cluster(etcd, 1, "10.1.0.0/16")
    config = Config(etcd_endpoints=[url], etcd_cacert=files / "ca.pem",
                    etcd_cert=files / "client.pem", etcd_key=files / "client-key.pem",
                    cluster_name=f"c{uuid.uuid4().hex[:8]}", cluster_id=2,
                    cluster_pool="10.2.0.0/16", state_dir=Path(tempfile.gettempdir()))
    remote = await start_replica(config)   # waits for its etcd
    mesh.started.append(remote)
    name = config.cluster_name
    await workload(remote, "r1", "192.0.2.2", "xwing", ["k8s:org=alliance"])

    rc, _, err = await bulkhead(local.address, "clustermesh", "connect", name,
                                "--etcd-endpoints", url)
    # without the client certificate: the control plane was reached, the remote etcd was not
    assert rc == 1 and "UNAVAILABLE" in err and f"remote cluster {name}'s etcd" in err \
        and "is not reachable" in err, err
    rc, out, err = await bulkhead(local.address, "clustermesh", "connect", name,
                                  "--etcd-endpoints", url,
                                  "--etcd-cacert", str(files / "ca.pem"),
                                  "--etcd-cert", str(files / "client.pem"),
                                  "--etcd-key", str(files / "client-key.pem"))
    assert rc == 0 and out.startswith(f"connected cluster {name} (id 2"), err

    async def synced() -> bool:
        s = await status_of(local, name)
        return s.ready and s.endpoints == 1
    await eventually(synced, "never synced over TLS")


async def test_an_endpoint_cannot_claim_another_cluster(etcd: EtcdProcess, mesh: Mesh) -> None:
    local = await mesh.cluster(etcd, 1, "10.1.0.0/16")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await workload(local, "l1", "192.0.2.1", "spy",
                       ["k8s:app=spy", "k8s:io.cilium.k8s.policy.cluster=elsewhere"])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = {v.field: v.description for v in field_violations(err.value)}
    assert f"here {local.cp.config.cluster_name}" in found["labels[1]"], found
    own = await workload(local, "l1", "192.0.2.1", "web", [
        "k8s:app=web", f"k8s:io.cilium.k8s.policy.cluster={local.cp.config.cluster_name}"])
    got = await identity_pb2_grpc.IdentityServiceStub(local.channel()).Get(
        identity_pb2.GetIdentityRequest(id=own.identity))
    assert list(got.labels) == [
        "k8s:app=web", f"k8s:io.cilium.k8s.policy.cluster={local.cp.config.cluster_name}"]


ALLIANCE_POLICY = """
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: rebels, namespace: default}
spec:
  endpointSelector: {matchLabels: {org: empire}}
  ingress:
  - fromEndpoints: [{matchLabels: {org: alliance}}]
"""


@pytest.mark.parametrize("local_only", [False, True])
async def test_policy_default_local_cluster_limits_peers_that_name_no_cluster(
        etcd: EtcdProcess, remote_etcd: EtcdProcess, mesh: Mesh, local_only: bool) -> None:
    local = await mesh.cluster(etcd, 1, "10.1.0.0/16",
                               policy_default_local_cluster=local_only)
    remote = await mesh.cluster(remote_etcd, 2, "10.2.0.0/16")
    remote_xwing = await workload(remote, "r1", "192.0.2.2", "xwing", [NS, "k8s:org=alliance"])
    deathstar = await workload(local, "l1", "192.0.2.200", "deathstar", [NS, "k8s:org=empire"])
    local_xwing = await workload(local, "l1", "192.0.2.200", "xwing", [NS, "k8s:org=alliance"])
    policies = policy_pb2_grpc.PolicyServiceStub(local.channel())
    await policies.Apply(policy_pb2.ApplyPoliciesRequest(yaml=ALLIANCE_POLICY))
    await connect(local, remote, remote_etcd)

    async def peers() -> set[tuple[int, int]]:
        resolved = await policies.Resolve(
            policy_pb2.ResolvePolicyRequest(identity=deathstar.identity))
        return {(e.peer, e.port_lo) for e in resolved.entries if e.direction == "ingress"}

    # a second policy naming the remote cluster: once its peer shows, the remote identity
    # has reached policy resolution
    await policies.Apply(policy_pb2.ApplyPoliciesRequest(
        yaml=CROSS_CLUSTER_POLICY.format(remote=remote.cp.config.cluster_name)))

    async def resolved_remote() -> bool:
        return (remote_xwing.identity, 80) in await peers()
    await eventually(resolved_remote, "the remote xwing never reached policy resolution")
    if local_only:
        assert await peers() == {(local_xwing.identity, 0), (remote_xwing.identity, 80)}
    else:   # off (Cilium's default): the remote cluster's alliance is a peer of both
        assert await peers() == {(local_xwing.identity, 0), (remote_xwing.identity, 0),
                                 (remote_xwing.identity, 80)}


def test_policy_default_local_cluster_flag() -> None:
    from controlplane.config import from_args
    assert from_args([]).policy_default_local_cluster is False
    assert from_args(["--policy-default-local-cluster"]).policy_default_local_cluster is True


def global_service(annotations: dict[str, str]) -> str:
    notes = "".join(f"\n    {k}: {v!r}" for k, v in annotations.items())
    return f"""
apiVersion: v1
kind: Service
metadata:
  name: echo
  namespace: default
  annotations:{notes or " {}"}
spec:
  selector: {{app: echo}}
  ports: [{{port: 80, protocol: TCP}}]
"""


async def apply_service(replica: Replica, annotations: dict[str, str]) -> None:
    await service_pb2_grpc.ServiceServiceStub(replica.channel()).Apply(
        service_pb2.ApplyServicesRequest(yaml=global_service(annotations)))


async def backends(replica: Replica) -> list[tuple[str, str, str]]:
    """(ip, cluster, node) of default/echo's backends, as `bulkhead service get` shows them."""
    svc = await service_pb2_grpc.ServiceServiceStub(replica.channel()).Get(
        service_pb2.GetServiceRequest(
            service=service_pb2.ServiceRef(namespace="default", name="echo")))
    return sorted((b.ip, b.cluster, b.node) for b in svc.backends)


async def test_global_service_balances_over_every_cluster_as_annotated(
        etcd: EtcdProcess, remote_etcd: EtcdProcess, mesh: Mesh) -> None:
    local = await mesh.cluster(etcd, 1, "10.1.0.0/16")
    remote = await mesh.cluster(remote_etcd, 2, "10.2.0.0/16")
    name = remote.cp.config.cluster_name
    there = await workload(remote, "r1", "192.0.2.2", "echo-r", [NS, "k8s:app=echo"])
    here = await workload(local, "l1", "192.0.2.200", "echo-l", [NS, "k8s:app=echo"])
    agent = await mesh.agent(local, "l1")
    await apply_service(local, {"service.cilium.io/global": "true"})
    await apply_service(remote, {"service.cilium.io/global": "true"})
    await connect(local, remote, remote_etcd)
    both = [(here.ip, "", "l1"), (there.ip, name, f"{name}/r1")]

    async def has(expected: list[tuple[str, str, str]]) -> bool:
        return await backends(local) == sorted(expected)
    await eventually(lambda: has(both), "the remote backend never joined the global service")

    def agent_backends() -> set[tuple[str, str]]:
        svc = agent.client.state.services.get("default/echo")
        return set() if svc is None else {(b.ip, b.cluster) for b in svc.backends}
    await eventually(lambda: agent_backends() == {(here.ip, ""), (there.ip, name)},
                     "the agent never got the remote backend")

    # affinity: local while there is a local backend; remote prefers the remote ones
    await apply_service(local, {"service.cilium.io/global": "true",
                                "service.cilium.io/affinity": "local"})
    await eventually(lambda: has(both[:1]), "affinity local kept the remote backend")
    await apply_service(local, {"service.cilium.io/global": "true",
                                "service.cilium.io/affinity": "remote"})
    await eventually(lambda: has(both[1:]), "affinity remote kept the local backend")
    # shared: "false" in the remote cluster keeps its backends there
    await apply_service(local, {"service.cilium.io/global": "true"})
    await apply_service(remote, {"service.cilium.io/global": "true",
                                 "service.cilium.io/shared": "false"})
    await eventually(lambda: has(both[:1]), "a service not shared still gave its backends")
    await apply_service(remote, {"service.cilium.io/global": "true"})
    await eventually(lambda: has(both), "shared again, the remote backend did not come back")
    # not global locally: local backends only
    await apply_service(local, {})
    await eventually(lambda: has(both[:1]), "a service not global got remote backends")
    await apply_service(local, {"service.cilium.io/global": "true"})
    await eventually(lambda: has(both), "global again, the remote backend did not come back")
    # disconnect: the remote backends go, from the admin API and from the agent
    await mesh_stub(local).Disconnect(clustermesh_pb2.DisconnectClusterRequest(name=name))
    await eventually(lambda: has(both[:1]), "a disconnected cluster's backend stayed")
    await eventually(lambda: agent_backends() == {(here.ip, "")},
                     "a disconnected cluster's backend stayed on the agent")


async def test_agent_resumed_by_a_fresh_replica_gets_remote_backend_changes(
        etcd: EtcdProcess, remote_etcd: EtcdProcess, mesh: Mesh) -> None:
    """A replica started after the agent's token rebuilds the deltas from etcd: a remote
    endpoint that joined a global service meanwhile re-sends the service."""
    local = await mesh.cluster(etcd, 1, "10.1.0.0/16")
    remote = await mesh.cluster(remote_etcd, 2, "10.2.0.0/16")
    name = remote.cp.config.cluster_name
    await workload(remote, "r1", "192.0.2.2", "echo-r", [NS, "k8s:app=echo"])
    here = await workload(local, "l1", "192.0.2.200", "echo-l", [NS, "k8s:app=echo"])
    await apply_service(local, {"service.cilium.io/global": "true"})
    await apply_service(remote, {"service.cilium.io/global": "true"})
    await connect(local, remote, remote_etcd)
    fresh_port = free_port()
    agent = Agent("l1", [local.address, f"127.0.0.1:{fresh_port}"], "192.0.2.200")
    mesh.agents.append(agent)
    await agent.start()

    def agent_backends() -> set[tuple[str, str]]:
        svc = agent.client.state.services.get("default/echo")
        return set() if svc is None else {(b.ip, b.cluster) for b in svc.backends}
    await eventually(lambda: len(agent_backends()) == 2, "the agent never got both backends")
    await agent.stop()
    assert agent.client.token is not None
    other = await workload(remote, "r1", "192.0.2.2", "echo-r2", [NS, "k8s:app=echo"])

    async def mirrored() -> bool:
        return (await status_of(local, name)).endpoints == 2
    await eventually(mirrored, "the new remote endpoint was never mirrored")
    config = dataclasses.replace(local.cp.config, replica_id=f"fresh-{uuid.uuid4().hex[:6]}")
    fresh = await start_replica_on(config, fresh_port)
    mesh.started.append(fresh)
    await local.stop()
    mesh.started.remove(local)
    agent.client._index = 1
    await agent.start()
    assert agent.client.stats.resumes == 1, agent.client.stats
    await eventually(lambda: (other.ip, name) in agent_backends(),
                     "the resumed agent never got the remote backend added meanwhile")
    assert (here.ip, "") in agent_backends()


async def test_a_syncer_with_a_read_only_credential_mirrors_an_embedded_etcd(
        tmp_path: Path, mesh: Mesh) -> None:
    """Issue 13 end to end: two clusters on embedded etcds (etcd's auth on). A certificate of
    the remote's etcd CA whose CN the remote never granted is refused at `connect`, naming
    the field; once granted read-only (clustermesh.access), the syncer mirrors the remote
    with it."""
    replicas = []
    for cluster_id in (1, 2):
        replica = await start_replica(Config(
            state_dir=tmp_path / f"c{cluster_id}", cluster_id=cluster_id,
            cluster_name=f"ro{cluster_id}-{uuid.uuid4().hex[:6]}",
            cluster_pool=f"10.{cluster_id}.0.0/16"))
        mesh.started.append(replica)
        replicas.append(replica)
    local, remote = replicas
    assert remote.cp.embedded is not None
    name = remote.cp.config.cluster_name
    user = f"clustermesh-{local.cp.config.cluster_name}"
    files = etcdtls.client(tmp_path / "c2", user)   # issued while the remote runs
    assert files.cacert and files.cert and files.key
    request = clustermesh_pb2.ConnectClusterRequest(
        name=name, etcd_endpoints=[remote.cp.embedded.endpoint],
        etcd_cacert=files.cacert.read_text(), etcd_cert=files.cert.read_text(),
        etcd_key=files.key.read_text())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await mesh_stub(local).Connect(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = {v.field: v.description for v in field_violations(err.value)}
    assert "refuses this certificate" in found["etcd_cert"], found

    await access.allow_remote(remote.cp.etcd, name, user)
    await workload(remote, "r1", "192.0.2.2", "xwing", ["k8s:org=alliance"])
    await mesh_stub(local).Connect(request)

    async def ready() -> bool:
        s = await status_of(local, name)
        return s.ready and (s.nodes, s.endpoints, s.identities) == (1, 1, 1)
    await eventually(ready, "the read-only syncer never mirrored the remote")
