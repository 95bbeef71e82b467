"""Resume across replicas, compaction, stalled subscribers and transaction atomicity, with a
real etcd and control-plane replicas as separate processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys

import grpc
import pytest

from bulkhead.v1 import policy_pb2, policy_pb2_grpc, subscription_pb2_grpc
from bulkhead.v1 import subscription_pb2 as pb

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
        "--state-file", str(state_file), "--insecure", stdout=asyncio.subprocess.DEVNULL,
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
        sys.executable, "-m", "cli.main", "--server", server, "--insecure", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


NS = "k8s:io.kubernetes.pod.namespace=default"


def _policy(name: str, app: str, peer: str) -> str:
    return (f"apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: {name}\n"
            f"  namespace: default\nspec:\n  endpointSelector:\n    matchLabels:\n"
            f"      app: {app}\n  ingress:\n  - fromEndpoints:\n    - matchLabels:\n"
            f"        app: {peer}\n")


async def test_fresh_replica_resumes_from_etcd_history(
        cluster: Cluster, agents: list[Agent]) -> None:
    """A replica started after the agent's token has no in-memory history before its start:
    it rebuilds what changed from etcd (the past read at the token's revision) instead of
    sending a snapshot, removals and policy included."""
    a = await cluster.start_replica("a")
    await cluster.register(a.address, "fr-1", "192.168.10.1")
    await cluster.register(a.address, "fr-peer", "192.168.10.2")
    for i in range(3):
        await cluster.create_endpoint(a.address, "fr-1" if i < 2 else "fr-peer", f"f{i}",
                                      [f"k8s:app=f{i}", NS])
    b_port = a.port + 1000 if a.port < 64000 else a.port - 1000
    agent = await Agent("fr-1", [a.address, f"127.0.0.1:{b_port}"], "192.168.10.1").start()
    agents.append(agent)
    policies = policy_pb2_grpc.PolicyServiceStub(cluster.channel(a.address))
    await policies.Apply(policy_pb2.ApplyPoliciesRequest(yaml=_policy("p0", "f0", "f2")),
                         timeout=10)
    await eventually(lambda: any(p.ingress_enforced for p in agent.client.state.policies.values()))
    await agent.stop()
    token = agent.client.token
    assert token is not None
    # Changes after the token: an endpoint gone (its identity no longer hosted), one new, a
    # policy replaced. Then a replica that starts only now.
    await cluster.delete_endpoint(a.address, "f1")
    await cluster.create_endpoint(a.address, "fr-1", "f3", ["k8s:app=f3", NS])
    await policies.Apply(policy_pb2.ApplyPoliciesRequest(yaml=_policy("p0", "f0", "f3")),
                         timeout=10)
    b = await cluster.start_replica("b", port=b_port)
    cluster.kill("a")
    agent.client._index = 1
    await agent.start()
    stats = agent.client.stats
    assert stats.replica == f"b-{cluster.tag}"
    assert stats.snapshots == 1 and stats.resumes == 1 and stats.resets == 0, stats
    assert agent.client.state.content() == await fresh_content(b.address, "fr-1", "")


async def test_rolling_restart_takes_no_snapshots(cluster: Cluster, agents: list[Agent]) -> None:
    """Three replicas restarted in turn (SIGTERM, started again on the same port, healthy
    before the next goes) while endpoints and policies change; then the two restarted first
    are lost, so every agent ends on the replica restarted last, whose history starts after
    the agents' tokens (etcd's revision moved on after the last change). Every agent resumes
    each time and ends with the state a fresh snapshot gives."""
    replicas = [await cluster.start_replica(name) for name in ("a", "b", "c")]
    addresses = [r.address for r in replicas]
    for i in range(3):
        agents.append(await Agent(f"roll-{i}", addresses, f"192.168.11.{i + 1}",
                                  first=i).start())
    stop = asyncio.Event()

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            live = [r for r in replicas if r.process.returncode is None]
            with contextlib.suppress(grpc.aio.AioRpcError):
                address = live[n % len(live)].address
                await cluster.create_endpoint(address, f"roll-{n % 3}", f"r{n}",
                                              [f"k8s:app=r{n % 4}", NS])
                if n >= 3:
                    await cluster.delete_endpoint(address, f"r{n - 3}")
                if n % 5 == 0:
                    await policy_pb2_grpc.PolicyServiceStub(cluster.channel(address)).Apply(
                        policy_pb2.ApplyPoliciesRequest(
                            yaml=_policy("roll", f"r{n % 4}", f"r{(n + 1) % 4}")), timeout=10)
            n += 1
            await asyncio.sleep(0.05)

    task = asyncio.create_task(writer())
    try:
        for index, replica in enumerate(replicas):
            if index == len(replicas) - 1:
                stop.set()
                await task
                # etcd's revision moves on without this cluster's watch seeing it (another
                # tenant's keys; the same happens with writes the subscription ignores).
                assert cluster.etcd is not None
                await cluster.etcd.put(f"/other-tenant/{cluster.tag}", b"x")
            await cluster.terminate(replica.name)
            replicas[index] = await cluster.start_replica(replica.name, port=replica.port)
            await eventually(lambda: all(x.client.synced.is_set() for x in agents))
            await asyncio.sleep(1.0)
    finally:
        stop.set()
        await task
    last = replicas[-1]
    for replica in replicas[:-1]:
        await cluster.terminate(replica.name)
    await eventually(lambda: all(x.client.stats.replica == f"{last.name}-{cluster.tag}"
                                 and x.client.synced.is_set() for x in agents),
                     "every agent moves to the replica restarted last")
    await cluster.create_endpoint(last.address, "roll-0", "after", ["k8s:app=after", NS])
    for agent in agents:
        stats = agent.client.stats
        assert stats.snapshots == 1 and stats.resets == 0, stats   # the first connect only
        assert stats.resumes >= 1, stats

    async def converged() -> bool:
        for agent in agents:
            fresh = await fresh_content(last.address, agent.client.node, "")
            if agent.client.state.content() != fresh:
                return False
        return True

    await eventually(converged, "an agent's state differs from a fresh snapshot")
