"""Group commit against a real etcd: merged transactions keep each part's own outcome."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from controlplane.store import etcd as ops
from controlplane.store.etcd import Etcd
from controlplane.store.groupcommit import GroupCommit
from integration.etcd_process import EtcdProcess


@pytest.fixture
async def client(etcd: EtcdProcess) -> AsyncIterator[Etcd]:
    client = Etcd([etcd.endpoint])
    yield client
    await client.close()


def create(key: str, value: bytes = b"v") -> tuple[list[object], list[object]]:
    return [ops.version_is(key, 0)], [ops.put(key, value)]


async def test_concurrent_creates_share_transactions_and_all_land(client: Etcd) -> None:
    prefix = f"/gc/{uuid.uuid4().hex}/"
    group = GroupCommit(client)
    results = await asyncio.gather(*(group.txn(*create(f"{prefix}{i}")) for i in range(200)))
    assert all(results)
    kvs, _, _ = await client.range(prefix)
    assert len(kvs) == 200
    assert group.batches > 0 and group.parts > group.batches  # some really were merged
    revisions = {kv.mod_revision for kv in kvs}
    assert len(revisions) < 200  # fewer etcd revisions than creates


async def test_a_false_compare_fails_only_its_own_part(client: Etcd) -> None:
    prefix = f"/gc/{uuid.uuid4().hex}/"
    await client.put(f"{prefix}taken", b"old")
    group = GroupCommit(client)
    keys = [f"{prefix}{i}" for i in range(30)] + [f"{prefix}taken"]
    results = await asyncio.gather(*(group.txn(*create(k, b"new")) for k in keys))
    assert results == [True] * 30 + [False]
    taken = await client.get(f"{prefix}taken")
    assert taken is not None and taken.value == b"old"
    kvs, _, _ = await client.range(prefix)
    assert len(kvs) == 31


async def test_parts_on_the_same_key_are_never_merged(client: Etcd) -> None:
    key = f"/gc/{uuid.uuid4().hex}/same"
    group = GroupCommit(client)
    results = await asyncio.gather(*(group.txn(*create(key, str(i).encode()))
                                     for i in range(10)))
    assert sorted(results) == [False] * 9 + [True]
    kv = await client.get(key)
    assert kv is not None and kv.value == str(results.index(True)).encode()


async def test_a_batch_etcd_refuses_falls_back_to_parts(client: Etcd) -> None:
    # More operations than etcd's --max-txn-ops (128) in one merged transaction: etcd refuses
    # it, and every part is then committed on its own.
    prefix = f"/gc/{uuid.uuid4().hex}/"
    group = GroupCommit(client, max_ops=400, max_in_flight=1)
    parts = [([ops.version_is(f"{prefix}{i}-{j}", 0) for j in range(4)],
              [ops.put(f"{prefix}{i}-{j}", b"v") for j in range(4)]) for i in range(60)]
    results = await asyncio.gather(*(group.txn(c, s) for c, s in parts))
    assert all(results)
    assert group.batches > 0  # a merge was tried
    kvs, _, _ = await client.range(prefix)
    assert len(kvs) == 240


async def test_only_puts_are_accepted(client: Etcd) -> None:
    group = GroupCommit(client)
    with pytest.raises(ValueError, match="puts only"):
        await group.txn([], [ops.delete("/gc/x")])
