"""Acks are checked against what the stream sent: a subscriber cannot claim a revision it was
never given, so convergence waits and `node list` only believe real acks. A real etcd, a real
replica process and raw Subscribe streams."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import grpc
import pytest

from bulkhead.rpcerror import field_violations
from bulkhead.v1 import policy_pb2, policy_pb2_grpc, subscription_pb2_grpc
from bulkhead.v1 import subscription_pb2 as pb
from tests.test_cli import bulkhead

from .cluster import Cluster
from .conftest import WAIT, Agent, eventually

pytestmark = pytest.mark.timeout(120)

FORGED = 1 << 62
WEB = ["k8s:app=web", "k8s:io.kubernetes.pod.namespace=default"]
POLICY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: web
  namespace: default
spec:
  endpointSelector:
    matchLabels:
      app: web
  ingress:
  - fromEndpoints:
    - matchLabels:
        app: client
"""


class RawStream:
    """A Subscribe stream driven by hand: what a buggy or hostile agent can send."""

    def __init__(self, channel: grpc.aio.Channel, node: str) -> None:
        self.outbox: asyncio.Queue[pb.AgentMessage | None] = asyncio.Queue()
        self.outbox.put_nowait(pb.AgentMessage(hello=pb.Hello(node=node)))
        self.call = subscription_pb2_grpc.SubscriptionServiceStub(channel).Subscribe(
            self._requests())
        self.synced: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.error: grpc.aio.AioRpcError | None = None
        self.done = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _requests(self) -> AsyncIterator[pb.AgentMessage]:
        while (message := await self.outbox.get()) is not None:
            yield message

    async def _read(self) -> None:
        try:
            async for message in self.call:
                if message.WhichOneof("msg") == "synced" and not self.synced.done():
                    self.synced.set_result(int(message.synced.revision))
        except grpc.aio.AioRpcError as exc:
            self.error = exc
        finally:
            self.done.set()

    def send(self, message: pb.AgentMessage | None) -> None:
        self.outbox.put_nowait(message)

    async def until_synced(self) -> int:
        return await asyncio.wait_for(asyncio.shield(self.synced), WAIT)

    async def ended(self) -> grpc.aio.AioRpcError:
        """Waits until the replica ended the stream; how it ended (an OK end fails)."""
        await asyncio.wait_for(self.done.wait(), WAIT)
        assert self.error is not None, "the stream ended OK"
        return self.error


async def recorded_ack(cluster: Cluster, replica: str, node: str) -> int | None:
    """The node's acked revision in the replica's status record in etcd (what convergence
    waits on every replica read), None when the record does not list it."""
    assert cluster.etcd is not None
    kv = await cluster.etcd.get(f"/bulkhead/v1/{cluster.cluster_name}/subscription-replicas/"
                                f"{replica}-{cluster.tag}")
    nodes = {n["name"]: n for n in json.loads(kv.value)["nodes"]} if kv else {}
    return nodes[node]["acked_revision"] if node in nodes else None


async def test_ack_above_what_was_sent_ends_the_stream_and_is_not_recorded(
        cluster: Cluster) -> None:
    a = await cluster.start_replica("a")
    await cluster.register(a.address, "forger", "192.168.9.1")
    stream = RawStream(cluster.channel(a.address), "forger")
    synced = await stream.until_synced()
    stream.send(pb.AgentMessage(ack=pb.Ack(revision=synced)))   # a true ack is taken

    async def acked_synced() -> bool:
        return await recorded_ack(cluster, "a", "forger") == synced

    await eventually(acked_synced, "the replica records the true ack")
    stream.send(pb.AgentMessage(ack=pb.Ack(revision=FORGED)))
    err = await stream.ended()
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    [violation] = field_violations(err)
    assert violation.field == "ack.revision"
    assert f"revision {FORGED} was never sent on this stream" in violation.description

    async def disconnected() -> bool:
        subs = await cluster.subscriptions(a.address)
        return "forger" in subs and not subs["forger"].connected

    await eventually(disconnected, "the forger is shown disconnected")
    subs = await cluster.subscriptions(a.address)
    assert subs["forger"].acked_revision == synced
    rc, out, err_text = await bulkhead(a.address, "node", "list", "-o", "json")
    assert rc == 0, err_text
    [node] = json.loads(out)
    assert (node["name"], int(node["acked_revision"])) == ("forger", synced)

    # A nack of a revision never sent is refused the same way.
    stream = RawStream(cluster.channel(a.address), "forger")
    await stream.until_synced()
    stream.send(pb.AgentMessage(nack=pb.Nack(revision=FORGED, error="x")))
    err = await stream.ended()
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(err)] == ["nack.revision"]


async def test_forged_ack_does_not_satisfy_a_policy_wait(cluster: Cluster,
                                                          agents: list[Agent]) -> None:
    # A long node lease: the forger's node and endpoint must outlive its stream for the wait.
    a = await cluster.start_replica("a", "--node-ttl", "120")
    agents.append(await Agent("honest", [a.address], "192.168.9.2").start())
    await cluster.create_endpoint(a.address, "honest", "web-2", WEB)
    await cluster.register(a.address, "forger", "192.168.9.1")
    ep = await cluster.create_endpoint(a.address, "forger", "web", WEB)

    # The forger acks far ahead of what it was sent and stays until the replica either ended
    # its stream or recorded the ack, then goes away.
    stream = RawStream(cluster.channel(a.address), "forger")
    await stream.until_synced()
    stream.send(pb.AgentMessage(ack=pb.Ack(revision=FORGED)))

    async def ended_or_recorded() -> bool:
        return stream.done.is_set() or await recorded_ack(cluster, "a", "forger") == FORGED

    await eventually(ended_or_recorded, "the forged ack is refused or recorded")
    stream.send(None)
    await asyncio.wait_for(stream.done.wait(), WAIT)

    applied = await policy_pb2_grpc.PolicyServiceStub(cluster.channel(a.address)).Apply(
        policy_pb2.ApplyPoliciesRequest(yaml=POLICY), timeout=10)
    admin = subscription_pb2_grpc.SubscriptionAdminServiceStub(cluster.channel(a.address))

    async def honest_applied() -> bool:
        subs = await cluster.subscriptions(a.address)
        return subs["honest"].acked_revision >= applied.revision

    await eventually(honest_applied, "the honest agent acks the policy")
    waited = await admin.WaitForRevision(pb.WaitForRevisionRequest(
        revision=applied.revision, identities=[ep.identity], timeout_seconds=1), timeout=10)
    assert not waited.converged
    assert [p.name for p in waited.pending] == ["forger"]
    subs = await cluster.subscriptions(a.address)
    assert "forger" not in subs or subs["forger"].acked_revision < applied.revision
    assert stream.error is not None
    assert stream.error.code() == grpc.StatusCode.INVALID_ARGUMENT
