"""Resume across replicas, compaction, stalled subscribers and transaction atomicity, with a
real etcd and control-plane replicas as separate processes."""

from __future__ import annotations

import asyncio
import json
import sys

import grpc
import pytest

from bulkhead.v1 import subscription_pb2 as pb
from bulkhead.v1 import subscription_pb2_grpc

from .cluster import Cluster
from .conftest import WAIT, Agent, eventually, fresh_content

pytestmark = pytest.mark.timeout(120)


async def test_killed_replica_agents_resume_on_other_with_deltas_only(
        cluster: Cluster, agents: list[Agent]) -> None:
    a = await cluster.start_replica("a")
    b = await cluster.start_replica("b")
    for i in range(3):
        agents.append(await Agent(f"node-{i}", [a.address, b.address], f"192.168.7.{i + 1}",
                                  first=0).start())
    assert {x.client.stats.replica for x in agents} == {f"a-{cluster.tag}"}
    stop = asyncio.Event()

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            node = f"node-{n % 3}"
            await cluster.create_endpoint(b.address, node, f"w{n}", [f"k8s:app=w{n % 5}"])
            if n >= 4:
                await cluster.delete_endpoint(b.address, f"w{n - 4}")
            n += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(writer())
    await eventually(lambda: all(len(x.deltas) >= 3 for x in agents))
    cluster.kill("a")
    await eventually(lambda: all(x.client.stats.replica == f"b-{cluster.tag}"
                                 and x.client.synced.is_set() for x in agents))
    await eventually(lambda: all(len(x.deltas) >= 10 for x in agents))
    stop.set()
    await task
    final = await cluster.revision()
    fresh = await fresh_content(b.address, "node-0", "192.168.7.1")
    await eventually(lambda: all(x.client.state.revision >= final - 1 and
                                 x.client.state.content()["ipcache"] == fresh["ipcache"]
                                 for x in agents))
    for agent in agents:
        stats = agent.client.stats
        assert stats.snapshots == 1, stats          # the first connect only
        assert stats.resumes == 1 and stats.resets == 0, stats
        content = agent.client.state.content()
        mine = await fresh_content(b.address, agent.client.node, "")
        assert content == mine                      # full state: nodes, ipcache, ids, policy

    async def listed_as_resumed_on_b() -> bool:
        # The snapshot streams fresh_content opened under the same node names may still be
        # closing on the replica (and listed as the node's newest stream) for a moment.
        subs = await cluster.subscriptions(b.address)
        return all(subs[f"node-{i}"].replica == f"b-{cluster.tag}"
                   and subs[f"node-{i}"].resumes >= 1 for i in range(3))

    await eventually(listed_as_resumed_on_b, "ListSubscriptions does not show the resumes")


async def test_compacted_revision_resets_and_snapshot_removes_stale(
        cluster: Cluster, agents: list[Agent]) -> None:
    a = await cluster.start_replica("a")
    agent = await Agent("cmp-1", [a.address], "192.168.8.1").start()
    agents.append(agent)
    for i in range(3):
        await cluster.create_endpoint(a.address, "cmp-1", f"c{i}", [f"k8s:app=c{i}"])
    await eventually(lambda: len(agent.client.state.ipcache) == 3)
    stale = {(p, e.identity) for p, e in agent.client.state.ipcache.items()}
    await agent.stop()
    token = agent.client.token
    assert token is not None
    for i in range(3):
        await cluster.delete_endpoint(a.address, f"c{i}")
    await cluster.create_endpoint(a.address, "cmp-1", "c-new", ["k8s:app=new"])
    assert cluster.etcd is not None
    await cluster.etcd.compact(await cluster.revision())
    await agent.start()
    stats = agent.client.stats
    assert stats.resets == 1 and stats.snapshots == 2 and stats.resumes == 0, stats
    assert not stale & {(p, e.identity) for p, e in agent.client.state.ipcache.items()}
    assert len(agent.client.state.ipcache) == 1
    assert agent.client.state.content() == await fresh_content(a.address, "cmp-1", "")


async def test_stalled_subscriber_is_reset_others_keep_receiving(
        cluster: Cluster, agents: list[Agent]) -> None:
    a = await cluster.start_replica("a", "--subscription-queue-bytes", "262144")
    await cluster.register(a.address, "stalled", "192.168.9.9")
    channel = grpc.aio.insecure_channel(a.address, options=[("grpc.http2.bdp_probe", 0)])
    stalled_out: asyncio.Queue[pb.AgentMessage] = asyncio.Queue()
    stalled_out.put_nowait(pb.AgentMessage(hello=pb.Hello(node="stalled")))

    async def requests():  # type: ignore[no-untyped-def]
        while True:
            yield await stalled_out.get()

    call = subscription_pb2_grpc.SubscriptionServiceStub(channel).Subscribe(requests())

    async def stalled_subscribed() -> bool:
        subs = await cluster.subscriptions(a.address)
        return "stalled" in subs and subs["stalled"].connected

    # Writes start only once the replica handled the stalled stream's Hello: it must be a
    # subscriber when the big deltas are queued, or there is nothing to stall.
    await eventually(stalled_subscribed, "the replica lists the stalled stream as connected")
    agent = await Agent("healthy", [a.address], "192.168.9.1").start()
    agents.append(agent)
    assert cluster.etcd is not None
    big = [f"k8s:big{j}=" + "v" * 200 for j in range(2000)]   # ~450 KB per identity
    for i in range(40):
        ident = 70000 + i
        await cluster.etcd.put(f"/bulkhead/v1/{cluster.cluster_name}/identities/id/{ident}",
                               json.dumps({"id": ident, "labels": big}).encode())
        await cluster.create_endpoint(a.address, "healthy", f"s{i}", [f"k8s:app=s{i}"])
    await eventually(lambda: len(agent.client.state.ipcache) == 40
                     and 70039 in agent.client.state.identities)
    subs = await cluster.subscriptions(a.address)
    assert subs["healthy"].connected
    code = None
    try:
        async for _ in call:
            pass
    except grpc.aio.AioRpcError as exc:
        code, details = exc.code(), exc.details() or ""
    assert code == grpc.StatusCode.ABORTED and "SLOW_CONSUMER" in details
    await channel.close()


async def test_one_transaction_arrives_as_one_delta(cluster: Cluster,
                                                     agents: list[Agent]) -> None:
    a = await cluster.start_replica("a")
    await cluster.register(a.address, "doomed", "192.168.10.2")
    for i in range(12):
        await cluster.create_endpoint(a.address, "doomed", f"d{i}", [f"k8s:app=d{i % 3}"])
    agent = await Agent("watcher", [a.address], "192.168.10.1").start()
    agents.append(agent)
    assert len(agent.client.state.ipcache) == 12
    assert cluster.etcd is not None
    kv = await cluster.etcd.get(f"/bulkhead/v1/{cluster.cluster_name}/nodes/doomed")
    assert kv is not None
    # The node's lease holds its record, endpoints and ipcache entries: one revision.
    await cluster.etcd.revoke(json.loads(kv.value)["lease"])
    await eventually(lambda: "doomed" not in agent.client.state.nodes)
    revisions = [rev for rev, _ in agent.deltas]
    assert revisions == sorted(revisions) and len(set(revisions)) == len(revisions)
    _, changes = agent.deltas[-1]
    kinds = [c.WhichOneof("object") for c in changes]
    assert kinds.count("ipcache_removed") == 12 and kinds.count("node_removed") == 1
    assert not agent.client.state.ipcache


async def test_agent_process_cli_status_and_wait(cluster: Cluster) -> None:
    a = await cluster.start_replica("a")
    state_file = cluster.dir / "agent.json"
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nodeagent.main", "--node", "proc-1", "--controlplane",
        a.address, "--underlay-ip", "192.168.11.1", "--datapath", "simulated",
        "--state-file", str(state_file), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        async def connected() -> bool:
            subs = await cluster.subscriptions(a.address)
            return "proc-1" in subs and subs["proc-1"].acked_revision > 0

        await eventually(connected, "the agent process proc-1 subscribed and acked",
                         interval=0.1)
        ep = await cluster.create_endpoint(a.address, "proc-1", "p1", ["k8s:app=p"])
        revision = await cluster.revision()
        out = await _cli(a.address, "policy", "wait", "--revision", str(revision),
                         "--identity", str(ep.identity), "--timeout", str(WAIT))
        assert out[0] == 0, out
        out = await _cli(a.address, "node", "list", "-o", "json")
        assert out[0] == 0, out
        row = json.loads(out[1])[0]
        for key in ("name", "replica", "connected_since", "acked_revision", "lag_revisions",
                    "resumes", "snapshots", "node_id", "pod_cidr"):
            assert key in row, row
        assert row["replica"] == f"a-{cluster.tag}" and int(row["snapshots"]) == 1
        out = await _cli(a.address, "status")
        assert "1/1 connected, max lag" in out[1], out
        # A node that hosts nothing of identity X is not waited for; an absent one times out.
        out = await _cli(a.address, "policy", "wait", "--revision", str(revision + 1000),
                         "--timeout", "0.5")
        assert out[0] == 1 and "proc-1" in out[2], out
        agent.send_signal(10)  # SIGUSR1: dump the state
        await eventually(lambda: state_file.exists())
        dumped = json.loads(state_file.read_text())
        assert f"{ep.ip}/32" in dumped["ipcache"] and dumped["synced"]
    finally:
        agent.terminate()
        await agent.wait()


async def _cli(server: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", "--server", server, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()
