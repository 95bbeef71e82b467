"""Item 5 of issue 14: the agent's unix socket is root-only; with node credentials its TCP API
answers only the control plane (whose flow relay presents its certificate)."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from bulkhead import tls
from bulkhead.rpcguard import guarded
from bulkhead.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    flow_pb2,
    node_pb2,
    node_pb2_grpc,
    observer_pb2,
    observer_pb2_grpc,
)
from controlplane.pki import certs
from nodeagent import apiports
from tests.security.test_join import create_token, join
from tests.security.tlsfixtures import TlsReplicaFactory


class OneFlowAgent(agent_pb2_grpc.AgentServiceServicer):
    """The flow side of an agent's API (the real one needs BPF): one flow held."""

    async def GetFlows(self, request: flow_pb2.GetFlowsRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[flow_pb2.Flow]:
        yield flow_pb2.Flow(time_ns=1, node="live", verdict="FORWARDED", sequence=1,
                            boot_id="b")

    async def AgentStatus(self, request: agent_pb2.AgentStatusRequest,
                          context: grpc.aio.ServicerContext) -> agent_pb2.AgentStatusResponse:
        return agent_pb2.AgentStatusResponse(node="live", flows_held=1, flows_max=10)


def agent_server() -> grpc.aio.Server:
    server = grpc.aio.server()
    agent_pb2_grpc.add_AgentServiceServicer_to_server(
        OneFlowAgent(), apiports.ControlPlaneOnly(guarded(server)))
    return server


async def test_the_unix_socket_is_root_only_from_the_start(tmp_path: Path) -> None:
    server = agent_server()
    path = tmp_path / "run" / "agent.sock"
    path.parent.mkdir()
    path.write_text("a killed agent's socket")
    apiports.bind_unix(server, path)
    await server.start()
    try:
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600  # before any chmod
        apiports.secure_socket(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        async with grpc.aio.insecure_channel(f"unix:{path}") as channel:  # root: served
            status = await agent_pb2_grpc.AgentServiceStub(channel).AgentStatus(
                agent_pb2.AgentStatusRequest(), timeout=10)
        assert status.node == "live"
    finally:
        await server.stop(None)


async def test_the_tcp_api_answers_only_the_controlplane(
        tls_replicas: TlsReplicaFactory) -> None:
    replica = await tls_replicas()
    node_pem, _ = await join(replica, await create_token(replica), "live")
    server = agent_server()
    port = apiports.bind_tcp(server, "127.0.0.1:0", lambda: node_pem)
    await server.start()
    try:
        async with replica.channel(node_pem) as channel:
            await node_pb2_grpc.NodeServiceStub(channel).Register(node_pb2.RegisterNodeRequest(
                name="live", underlay_ip="192.0.2.1", agent_address=f"127.0.0.1:{port}"))
        await replica.cp.cache.wait_for((await replica.cp.etcd.status()).revision)
        # The relay presents the control plane's certificate and checks the agent's (by name).
        async with replica.channel(replica.admin()) as admin:
            observer = observer_pb2_grpc.ObserverServiceStub(admin)
            flows = [f async for f in observer.GetFlows(flow_pb2.GetFlowsRequest(last=5),
                                                        timeout=30)]
        assert [f.node for f in flows] == ["live"]

        address = f"127.0.0.1:{port}"
        options = [("grpc.ssl_target_name_override", "live")]
        other_pem, _ = await join(replica, await create_token(replica), "other")
        admin_pem = tls.Credentials.admin_in(replica.state_dir)
        for who in (admin_pem, other_pem):  # known to the CA, but not the control plane
            async with tls.aio_channel(address, who, options) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await agent_pb2_grpc.AgentServiceStub(channel).AgentStatus(
                        agent_pb2.AgentStatusRequest(), timeout=10)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "answers only the control plane" in (refused.value.details() or "")
        # No certificate, or one of another CA: no connection at all.
        stranger = replica.credential("bulkhead-controlplane", certs.ADMIN,
                                      ca=certs.CA.create("elsewhere"))
        for channel in (grpc.aio.insecure_channel(address),
                        tls.aio_channel(address, stranger, options)):
            async with channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await agent_pb2_grpc.AgentServiceStub(channel).AgentStatus(
                        agent_pb2.AgentStatusRequest(), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        async with replica.channel(replica.admin()) as admin:
            status = await observer_pb2_grpc.ObserverServiceStub(admin).ObserverStatus(
                observer_pb2.ObserverStatusRequest(), timeout=30)
        assert [(n.node, n.reachable) for n in status.nodes] == [("live", True)]
    finally:
        await server.stop(None)
