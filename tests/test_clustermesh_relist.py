"""The clustermesh syncer's initial list of a remote bigger than several mirror transactions,
against the session's real etcd (the remote cluster is another cluster prefix on it): the
mirror ends up exactly the remote's state with the status written after it, and a syncer whose
guard fails writes neither."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from controlplane.clustermesh.syncer import CHUNK, IN_FLIGHT, NotLeader, RemoteSyncer
from controlplane.records.codec import IPCacheEntry, MeshStatusRecord, RemoteClusterRecord
from controlplane.store import etcd as ops
from controlplane.store.cache import ClusterCache
from controlplane.store.etcd import KV, Etcd
from controlplane.store.keys import Keys
from integration.etcd_process import EtcdProcess

ENTRIES = CHUNK * (IN_FLIGHT + 2) + 7
"""More transactions than run at once, the last one partial."""


@pytest.fixture
async def client(etcd: EtcdProcess) -> AsyncIterator[Etcd]:
    etcd_client = Etcd([etcd.endpoint])
    yield etcd_client
    await etcd_client.close()


def entry(i: int, remote: str) -> IPCacheEntry:
    return IPCacheEntry(f"10.9.{i // 250}.{i % 250 + 1}/32", 0x20000 + i, "r1", "192.0.2.2",
                        8472, remote)


async def setup(client: Etcd, *, leader: str) -> tuple[RemoteSyncer, Keys, Keys, int]:
    """A remote holding ENTRIES ipcache entries and a stale local mirror of it (a key the remote
    no longer has, a value it changed since); a syncer whose guard holds when `leader` is its
    replica; and the revision of the last write here."""
    local, remote = Keys(f"l{uuid.uuid4().hex[:8]}"), Keys(f"r{uuid.uuid4().hex[:8]}")
    puts = [ops.put(remote.ipcache_entry(e.prefix), e.encode())
            for e in (entry(i, remote.cluster) for i in range(ENTRIES))]
    for i in range(0, len(puts), CHUNK):
        assert (await client.txn([], puts[i:i + CHUNK])).succeeded
    mirror = local.mesh_mirror(remote.cluster)
    gone = entry(ENTRIES, remote.cluster)
    changed = entry(0, "before")
    await client.put(f"{mirror}ipcache/{gone.prefix.replace('/', '_')}", gone.encode())
    await client.put(f"{mirror}ipcache/{changed.prefix.replace('/', '_')}", changed.encode())
    record = RemoteClusterRecord(remote.cluster, 2, "10.9.0.0/16", ("unused:1",))
    record_revision = await client.put(local.mesh_remote(remote.cluster), record.encode())
    written = await client.put(local.mesh_leader(remote.cluster), leader.encode())
    syncer = RemoteSyncer(client, local, ClusterCache(client, local.prefix), record,
                          record_revision, "replica-a")
    return syncer, local, remote, written


async def under(client: Etcd, prefix: str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    async for kvs, _revision in client.pages(prefix):
        found.update((kv.key[len(prefix):], kv.value) for kv in kvs)
    return found


async def test_a_relist_of_many_transactions_mirrors_the_remote_exactly_then_the_status(
        client: Etcd, monkeypatch: pytest.MonkeyPatch) -> None:
    syncer, local, remote, written = await setup(client, leader="replica-a")
    name = remote.cluster
    order: list[str] = []   # the key of each successful transaction's last put, in order
    txn = client.txn

    async def recording(compare: list[object], success: list[object]) -> object:
        result = await txn(compare, success)
        if result.succeeded and success:
            order.append(success[-1].request_put.key.decode())   # type: ignore[attr-defined]
        return result
    monkeypatch.setattr(client, "txn", recording)

    await syncer._relist(client)

    mirrored = await under(client, local.mesh_mirror(name))
    assert mirrored == await under(client, remote.prefix)
    assert len(mirrored) == ENTRIES
    status_kv: KV | None = await client.get(local.mesh_status(name))
    assert status_kv is not None
    status = MeshStatusRecord.of_kv(status_kv)
    assert status.revision >= written   # resumes after what was listed
    assert not status.ready   # ready only once the watch caught up
    assert len(order) == -(-(ENTRIES + 1) // CHUNK)   # the puts and the stale key's delete
    assert order[-1] == local.mesh_status(name)   # the status is the last write


async def test_a_relist_whose_guard_fails_writes_nothing(client: Etcd) -> None:
    syncer, local, remote, _ = await setup(client, leader="replica-b")   # another replica leads
    before = await under(client, local.mesh_mirror(remote.cluster))
    with pytest.raises(NotLeader):
        await syncer._relist(client)
    assert await under(client, local.mesh_mirror(remote.cluster)) == before
    assert await client.get(local.mesh_status(remote.cluster)) is None
