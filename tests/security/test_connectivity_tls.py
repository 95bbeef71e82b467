"""Connectivity tests under `--tls`: the control plane relays an admin's call to the node's
agent over mutual TLS (presenting its own certificate, as the flow relay does); a reader may
not call it; the agent's TCP port answers the call only from the control plane."""

from __future__ import annotations

import grpc
import pytest

from bulkhead import tls
from bulkhead.rpcguard import guarded
from bulkhead.v1 import connectivity_pb2 as pb
from bulkhead.v1 import connectivity_pb2_grpc, node_pb2, node_pb2_grpc
from controlplane.pki import certs
from nodeagent import apiports
from tests.security.test_join import create_token, join
from tests.security.tlsfixtures import TlsReplicaFactory


class AnsweringAgent(connectivity_pb2_grpc.ConnectivityServiceServicer):
    """The connectivity side of an agent's API (the real one needs BPF): every probe answers."""

    async def RunProbe(self, request: pb.ProbeRequest,
                       context: grpc.aio.ServicerContext) -> pb.ProbeResult:
        return pb.ProbeResult(ok=True, detail=f"probed {request.ip} from {request.node}")


async def test_probes_are_relayed_over_mtls_for_the_admin_only(
        tls_replicas: TlsReplicaFactory) -> None:
    replica = await tls_replicas()
    node_pem, _ = await join(replica, await create_token(replica), "live")
    server = grpc.aio.server()
    connectivity_pb2_grpc.add_ConnectivityServiceServicer_to_server(
        AnsweringAgent(), apiports.ControlPlaneOnly(guarded(server)))
    port = apiports.bind_tcp(server, "127.0.0.1:0", lambda: node_pem)
    await server.start()
    probe = pb.ProbeRequest(node="live", kind="icmp", ip="192.0.2.9")
    try:
        async with replica.channel(node_pem) as channel:
            await node_pb2_grpc.NodeServiceStub(channel).Register(node_pb2.RegisterNodeRequest(
                name="live", underlay_ip="192.0.2.1", agent_address=f"127.0.0.1:{port}"))
        await replica.cp.cache.wait_for((await replica.cp.etcd.status()).revision)
        async with replica.channel(replica.admin()) as admin:
            answer = await connectivity_pb2_grpc.ConnectivityServiceStub(admin).RunProbe(
                probe, timeout=30)
        assert answer.detail == "probed 192.0.2.9 from live"
        reader = replica.credential("auditor", certs.READER)
        async with replica.channel(reader) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await connectivity_pb2_grpc.ConnectivityServiceStub(channel).RunProbe(
                    probe, timeout=30)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # The admin's own certificate does not open the agent's port.
        options = [("grpc.ssl_target_name_override", "live")]
        async with tls.aio_channel(f"127.0.0.1:{port}", tls.Credentials.admin_in(
                replica.state_dir), options) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await connectivity_pb2_grpc.ConnectivityServiceStub(channel).RunProbe(
                    probe, timeout=10)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await server.stop(None)


async def test_the_test_lock_is_the_admins_and_names_its_certificate(
        tls_replicas: TlsReplicaFactory) -> None:
    """Taking the connectivity-test lock is a write (a reader may not); the holder a second
    run is told carries the caller's certificate name beside what the CLI said."""
    replica = await tls_replicas()
    request = pb.HoldTestLockRequest(holder="alice@ops pid 1")
    reader = replica.credential("auditor", certs.READER)
    async with replica.channel(reader) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await connectivity_pb2_grpc.ConnectivityServiceStub(channel).HoldTestLock(
                request).read()
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    async with replica.channel(replica.admin()) as admin:
        call = connectivity_pb2_grpc.ConnectivityServiceStub(admin).HoldTestLock(request)
        held = await call.read()
        call.cancel()
    assert held.holder.startswith("alice@ops pid 1 (") and held.holder.endswith(")")
    assert held.holder != "alice@ops pid 1 ()"
