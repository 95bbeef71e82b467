"""Item 4 of issue 14: bootstrap tokens, the join, renewal under a live stream, revocation
seen by every replica."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from bulkhead import tls
from bulkhead.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    security_pb2,
    security_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
)
from controlplane.pki import certs
from controlplane.pki.keys import PkiKeys
from nodeagent.credentials import csr
from tests.conftest import eventually
from tests.security.test_mtls import cli
from tests.security.tlsfixtures import TlsReplica, TlsReplicaFactory
from tests.test_cli import ROOT


def admin_flags(replica: TlsReplica) -> list[str]:
    admin = replica.admin()
    return ["--server", replica.address, "--tls-ca", str(admin.ca), "--tls-cert",
            str(admin.cert), "--tls-key", str(admin.key)]


async def join(replica: TlsReplica, token: str, node: str) -> tuple[tls.Pem, int]:
    key = certs.new_key()
    async with replica.join_channel() as channel:
        answer = await security_pb2_grpc.SecurityServiceStub(channel).Join(
            security_pb2.JoinRequest(token=token, csr=csr(key, node)), timeout=10)
    return tls.Pem(answer.ca, answer.certificate, certs.key_pem(key)), int(answer.serial, 16)


async def create_token(replica: TlsReplica, ttl: int = 0, node: str = "") -> str:
    async with replica.channel(replica.admin()) as channel:
        made = await security_pb2_grpc.SecurityServiceStub(channel).CreateToken(
            security_pb2.CreateTokenRequest(ttl_seconds=ttl, node=node))
    return made.token


async def refused(call: object, code: grpc.StatusCode = grpc.StatusCode.UNAUTHENTICATED) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == code, caught.value.details()
    return caught.value.details() or ""


async def test_tokens_from_the_cli_join_once(tls_replicas: TlsReplicaFactory) -> None:
    replica = await tls_replicas()
    rc, out, err = await cli(*admin_flags(replica), "node", "token", "create", "--ttl", "600",
                             "--node", "n1", "-o", "json", env={})
    assert rc == 0, err
    made = json.loads(out)
    token_id, secret = made["token"].split(".")
    assert made["id"] == token_id and made["node"] == "n1"
    rc, out, err = await cli(*admin_flags(replica), "node", "token", "list", "-o", "json",
                             env={})
    assert [t["id"] for t in json.loads(out)] == [token_id] and secret not in out
    stored = await replica.cp.etcd.get(PkiKeys(replica.cp.config.cluster_name).token(token_id))
    assert stored is not None and secret.encode() not in stored.value  # kept hashed

    # Named for n1: another name may not use it; n1 may, once.
    message = await refused(join(replica, made["token"], "n2"))
    assert "for node 'n1', not 'n2'" in message
    pem, _ = await join(replica, made["token"], "n1")
    cert = x509.load_pem_x509_certificate(pem.cert)
    assert (certs.subject_of(cert).name, certs.subject_of(cert).role) == ("n1", "node")
    assert "used" in await refused(join(replica, made["token"], "n1"))
    # The certificate works where a node's does; the join port serves nothing else.
    async with replica.channel(pem) as channel:
        await node_pb2_grpc.NodeServiceStub(channel).Register(
            node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    async with replica.join_channel() as channel:
        message = await refused(admin_pb2_grpc.AdminServiceStub(channel).Status(
            admin_pb2.StatusRequest()))
    assert "needs a client certificate" in message

    # Revoked and expired tokens are refused.
    revoked = await create_token(replica)
    rc, _, err = await cli(*admin_flags(replica), "node", "token", "revoke",
                           revoked.split(".")[0], env={})
    assert rc == 0, err
    assert "unknown, used or revoked" in await refused(join(replica, revoked, "n3"))
    short = await create_token(replica, ttl=1)
    await asyncio.sleep(1.5)
    assert "expired" in await refused(join(replica, short, "n3"))
    assert "malformed" in await refused(join(replica, "nonsense", "n3"))

    rc, out, err = await cli(*admin_flags(replica), "node", "revoke", "n1", "-o", "json",
                             env={})
    assert rc == 0, err
    assert json.loads(out) == {"node": "n1", "serials": [f"{cert.serial_number:x}"]}
    rc, _, err = await cli(*admin_flags(replica), "node", "token", "revoke", "zzzzzz", env={})
    assert rc == 1 and "NOT_FOUND" in err


async def open_stream(pem: tls.Pem, replica: TlsReplica, node: str
                      ) -> tuple[grpc.aio.Channel, grpc.aio.StreamStreamCall]:
    channel = replica.channel(pem)

    async def requests() -> AsyncIterator[subscription_pb2.AgentMessage]:
        yield subscription_pb2.AgentMessage(hello=subscription_pb2.Hello(node=node))
        await asyncio.Event().wait()

    call = subscription_pb2_grpc.SubscriptionServiceStub(channel).Subscribe(requests())
    first = await asyncio.wait_for(call.read(), 10)
    assert first is not grpc.aio.EOF
    return channel, call


async def ended_with(call: grpc.aio.StreamStreamCall) -> tuple[grpc.StatusCode, str]:
    try:
        while await asyncio.wait_for(call.read(), 20) is not grpc.aio.EOF:
            pass
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


async def test_revocation_cuts_the_stream_and_every_replica_refuses(
        tls_replicas: TlsReplicaFactory) -> None:
    a, b = await tls_replicas(), await tls_replicas()
    pem, serial = await join(a, await create_token(a), "n1")
    async with b.channel(pem) as channel:
        await node_pb2_grpc.NodeServiceStub(channel).Register(
            node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    channel, call = await open_stream(pem, b, "n1")   # on replica b
    async with a.channel(a.admin()) as admin:         # revoked through replica a
        done = await security_pb2_grpc.SecurityServiceStub(admin).RevokeNode(
            security_pb2.RevokeNodeRequest(node="n1"))
    assert done.serials == [f"{serial:x}"]
    code, details = await ended_with(call)
    assert code == grpc.StatusCode.UNAUTHENTICATED and "revoked" in details
    await channel.close()
    for replica in (a, b):
        async with replica.channel(pem) as again:
            message = await refused(node_pb2_grpc.NodeServiceStub(again).Heartbeat(
                node_pb2.HeartbeatRequest(name="n1")))
        assert "revoked" in message

    # An admin deleting a node revokes its certificates too.
    pem2, _ = await join(a, await create_token(a), "n2")
    async with a.channel(pem2) as channel2:
        await node_pb2_grpc.NodeServiceStub(channel2).Register(
            node_pb2.RegisterNodeRequest(name="n2", underlay_ip="192.0.2.2"))
    async with a.channel(a.admin()) as admin:
        await node_pb2_grpc.NodeServiceStub(admin).Deregister(
            node_pb2.DeregisterNodeRequest(name="n2"))

    async def n2_refused() -> bool:
        async with b.channel(pem2) as channel3:
            try:
                await node_pb2_grpc.NodeServiceStub(channel3).Heartbeat(
                    node_pb2.HeartbeatRequest(name="n2"))
            except grpc.aio.AioRpcError as exc:
                return exc.code() == grpc.StatusCode.UNAUTHENTICATED
        return False

    assert await eventually(n2_refused)


async def test_agent_joins_and_renews_without_dropping_its_stream(
        tls_replicas: TlsReplicaFactory, tmp_path: Path) -> None:
    replica = await tls_replicas(node_cert_ttl=12)
    token = await create_token(replica, node="agent1")
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    ca = tmp_path / "ca.crt"
    ca.write_bytes(replica.tls.ca_pem)
    node_dir = tmp_path / "node"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "nodeagent.main", "--node", "agent1", "--datapath", "simulated",
        "--controlplane", replica.address, "--underlay-ip", "192.0.2.11",
        "--tls-ca", str(ca), "--tls-dir", str(node_dir), "--join-token-file", str(token_file),
        "--join-server", replica.join_address,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'proto'}"})
    admin = replica.channel(replica.admin())
    subs = subscription_pb2_grpc.SubscriptionAdminServiceStub(admin)

    async def subscription() -> subscription_pb2.NodeSubscription | None:
        listed = await subs.ListSubscriptions(subscription_pb2.ListSubscriptionsRequest())
        return next((s for s in listed.subscriptions if s.name == "agent1" and s.connected),
                    None)

    try:
        assert await eventually(lambda: _is_set(subscription()), timeout=30)
        first = await subscription()
        assert first is not None
        cert_file = node_dir / "node.crt"
        joined = cert_file.read_bytes()
        assert {p.name: oct(p.stat().st_mode & 0o777) for p in node_dir.iterdir()} == \
            dict.fromkeys(["node.crt", "node.key", "ca.crt"], "0o600")

        seen = {x509.load_pem_x509_certificate(joined).serial_number}

        async def renewed_twice() -> bool:
            # Twice: the second renewal is made with the first renewed certificate.
            seen.add(x509.load_pem_x509_certificate(cert_file.read_bytes()).serial_number)
            return len(seen) >= 3

        assert await eventually(renewed_twice, timeout=40, interval=0.5)
        after = await subscription()
        assert after is not None  # still connected, and on the same stream:
        assert (after.connected_since, after.resumes, after.snapshots) == \
            (first.connected_since, first.resumes, first.snapshots)
        # The joined certificate has expired by now; the stream outlived it.
        assert certs.not_after(x509.load_pem_x509_certificate(joined)) < certs.now()
    finally:
        await admin.close()
        process.terminate()
        output, _ = await process.communicate()
    assert token.split(".")[1] not in output.decode()  # the token is never logged


async def _is_set(value: object) -> bool:
    return (await value) is not None  # type: ignore[misc]


async def test_revoking_a_node_refuses_certificates_it_did_not_list_and_cuts_every_stream(
        tls_replicas: TlsReplicaFactory) -> None:
    """A certificate signed while the revocation listed the node's serials (as a racing
    renewal would be: issued, but not in the list) is refused too; both streams of one
    certificate are cut; the node may join again afterwards with a new token."""
    replica = await tls_replicas()
    pem, _ = await join(replica, await create_token(replica), "n1")
    unlisted = replica.credential("n1", certs.NODE)  # signed by the CA, never recorded
    async with replica.channel(pem) as channel:
        await node_pb2_grpc.NodeServiceStub(channel).Register(
            node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    streams = [await open_stream(pem, replica, "n1"), await open_stream(pem, replica, "n1")]
    async with replica.channel(replica.admin()) as admin:
        await security_pb2_grpc.SecurityServiceStub(admin).RevokeNode(
            security_pb2.RevokeNodeRequest(node="n1"))
    for channel, call in streams:
        assert (await ended_with(call))[0] == grpc.StatusCode.UNAUTHENTICATED
        await channel.close()

    async def heartbeat(material: tls.Pem) -> None:
        async with replica.channel(material) as channel:
            await node_pb2_grpc.NodeServiceStub(channel).Heartbeat(
                node_pb2.HeartbeatRequest(name="n1"))

    assert "revoked" in await refused(heartbeat(unlisted))
    await asyncio.sleep(1.1)  # certificate times have a resolution of one second
    fresh, _ = await join(replica, await create_token(replica), "n1")
    await heartbeat(fresh)
