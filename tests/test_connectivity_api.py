"""ConnectivityService on the control plane: which node a call goes to, and what a caller is
told when it cannot go there (no such node, no agent address, an agent that does not answer).
The agent's own checks and the probes themselves run in integration/test_connectivity.py."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc
import pytest

from bulkhead.rpcerror import field_violations
from bulkhead.v1 import connectivity_pb2 as pb
from bulkhead.v1 import connectivity_pb2_grpc, node_pb2, node_pb2_grpc
from controlplane.store.embedded import free_port
from tests.conftest import ReplicaFactory, eventually


async def _call_fails(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value


async def test_a_call_names_an_existing_node(replicas: ReplicaFactory) -> None:
    stub = connectivity_pb2_grpc.ConnectivityServiceStub((await replicas()).channel())
    err = await _call_fails(stub.CreateTestPod(pb.CreateTestPodRequest(name="client")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(err)] == ["node"]
    err = await _call_fails(stub.RunProbe(pb.ProbeRequest(node="nowhere", kind="tcp")))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "nowhere" in (err.details() or "")


async def test_nodes_without_a_reachable_agent_are_reported(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    nodes = node_pb2_grpc.NodeServiceStub(replica.channel())
    await nodes.Register(node_pb2.RegisterNodeRequest(name="noagent", underlay_ip="10.0.0.7"))
    closed = f"127.0.0.1:{free_port()}"
    await nodes.Register(node_pb2.RegisterNodeRequest(name="gone", underlay_ip="10.0.0.8",
                                                      agent_address=closed))
    assert await eventually(lambda: _cached(replica.cp, "noagent", "gone"))
    stub = connectivity_pb2_grpc.ConnectivityServiceStub(replica.channel())
    err = await _call_fails(stub.RunProbe(pb.ProbeRequest(node="noagent", kind="icmp",
                                                          ip="10.0.0.1")))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no agent API address" in (err.details() or "")
    err = await _call_fails(stub.CreateTestPod(pb.CreateTestPodRequest(node="gone",
                                                                       name="client")))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "gone" in (err.details() or "") and closed in (err.details() or "")
    # Cleaning up every node reports each node with an agent address, the failures included.
    cleaned = await stub.CleanupTestPods(pb.CleanupTestPodsRequest())
    assert [(n.node, bool(n.error)) for n in cleaned.nodes] == [("gone", True)]


async def _cached(cp: object, *names: str) -> bool:
    return all(cp.nodes.cached(n) is not None for n in names)  # type: ignore[attr-defined]


async def test_the_cli_needs_two_nodes_with_a_reachable_agent(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    nodes = node_pb2_grpc.NodeServiceStub(replica.channel())
    await nodes.Register(node_pb2.RegisterNodeRequest(
        name="gone", underlay_ip="10.0.0.8", agent_address=f"127.0.0.1:{free_port()}"))
    assert await eventually(lambda: _cached(replica.cp, "gone"))
    cases: list[tuple[list[str], str]] = [
        ([], "needs two nodes with a reachable agent; found none"),
        (["--node", "gone", "--node", "other"], "no reachable agent on node gone, other")]
    for args, said in cases:
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "bulkhead"), "--server", replica.address,
            "--insecure", "connectivity", "test", *args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 1
        assert err.decode().startswith("bulkhead: connectivity test: ")
        assert said in err.decode(), err.decode()
        assert out == b""
