"""The RPC fuzz suite's control plane: a replica in its own process on a private etcd."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from aetcd import rpc  # type: ignore[import-untyped]

from bulkhead import tls as btls
from integration.etcd_process import etcd_process
from tests.procserver import ReplicaProcess, replica_process

VOLATILE = ("replicas/", "subscription-replicas/", "subscriptions/")
"""Keys (under the cluster prefix) the replica writes on its own: its presence and its
subscription status records."""


@dataclass
class FuzzServer:
    replica: ReplicaProcess
    cluster: str
    etcd_channel: grpc.Channel
    material: btls.Material | None = None
    """With --tls: the admin credential the fuzzing client presents."""

    @property
    def address(self) -> str:
        return self.replica.address

    def alive(self) -> bool:
        return self.replica.alive()

    def log_tail(self) -> str:
        return self.replica.log_tail()

    def open_channel(self, *, join: bool = False) -> grpc.Channel:
        """A client channel (large responses allowed); `join`: to the --tls join port, as a
        node without a certificate."""
        options = [("grpc.max_receive_message_length", -1)]
        if join:
            assert isinstance(self.material, btls.Credentials)
            ca = self.material.read()[0]
            return grpc.secure_channel(self.replica.join_address,
                                       grpc.ssl_channel_credentials(root_certificates=ca),
                                       options=options)
        return btls.channel(self.address, self.material, options=options)

    def dump(self) -> dict[bytes, tuple[bytes, int]]:
        """Every key of the etcd with its value and mod revision, but VOLATILE ones."""
        response = rpc.KVStub(self.etcd_channel).Range(
            rpc.RangeRequest(key=b"\0", range_end=b"\0"), timeout=30)
        prefix = f"/bulkhead/{self.cluster}/"
        volatile = tuple((prefix + v).encode() for v in VOLATILE)
        return {kv.key: (kv.value, kv.mod_revision) for kv in response.kvs
                if not kv.key.startswith(volatile)}


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[FuzzServer]:
    cluster = f"fz{uuid.uuid4().hex[:10]}"
    # Leases and the identity grace period far beyond a run: nothing expires in the middle of
    # a call, so a refused call's "etcd unchanged" check sees only what the call did.
    with etcd_process() as etcd, \
            replica_process(etcd.endpoint, cluster, node_ttl=3600,
                            identity_gc_grace=3600.0) as replica:
        channel = grpc.insecure_channel(etcd.endpoint)
        try:
            yield FuzzServer(replica, cluster, channel)
        finally:
            channel.close()


@pytest.fixture(scope="module")
def tls_fuzz_server() -> Iterator[FuzzServer]:
    """A --tls replica (authorization on every call), the client holding the admin
    credential."""
    cluster = f"fzt{uuid.uuid4().hex[:10]}"
    with etcd_process() as etcd, tempfile.TemporaryDirectory(prefix="bulkhead-fuzz-") as state, \
            replica_process(etcd.endpoint, cluster, node_ttl=3600, identity_gc_grace=3600.0,
                            tls=True, state_dir=state) as replica:
        channel = grpc.insecure_channel(etcd.endpoint)
        try:
            yield FuzzServer(replica, cluster, channel, btls.Credentials.admin_in(Path(state)))
        finally:
            channel.close()
