"""While etcd is unreachable the API answers UNAVAILABLE (never a traceback), and it serves
again, with nothing lost, once etcd is back."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pytest

from bulkhead.v1 import admin_pb2, admin_pb2_grpc, identity_pb2, identity_pb2_grpc
from controlplane.config import Config
from integration.etcd_process import etcd_process
from tests.conftest import start_replica


async def test_unavailable_while_etcd_is_down() -> None:
    with etcd_process() as etcd:
        replica = await start_replica(Config(etcd_endpoints=[etcd.endpoint],
                                             cluster_name=f"o{uuid.uuid4().hex[:8]}",
                                             state_dir=Path("/tmp")))
        try:
            channel = replica.channel()
            identities = identity_pb2_grpc.IdentityServiceStub(channel)
            admin = admin_pb2_grpc.AdminServiceStub(channel)
            before = await identities.Allocate(identity_pb2.AllocateIdentityRequest(
                labels=["k8s:app=before"]))
            etcd.stop()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await identities.Allocate(identity_pb2.AllocateIdentityRequest(
                    labels=["k8s:app=during"]))
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "etcd" in (err.value.details() or "")
            status = await admin.Status(admin_pb2.StatusRequest())
            assert not status.etcd.healthy and status.etcd.error
            etcd.start()
            again = await identities.Allocate(identity_pb2.AllocateIdentityRequest(
                labels=["k8s:app=before"]))
            assert again.id == before.id
            during = await identities.Allocate(identity_pb2.AllocateIdentityRequest(
                labels=["k8s:app=during"]))
            assert during.id != before.id
        finally:
            await replica.stop()
