"""The revision pipeline on a real replica: a revision that brings views nothing (here an
undecodable record) still advances the subscription, so agents' acks and waits can reach it."""

from __future__ import annotations

from controlplane.store.keys import Keys
from tests.conftest import ReplicaFactory


async def test_a_revision_with_only_an_undecodable_record_advances_the_subscription(
        replicas: ReplicaFactory) -> None:
    replica = await replicas()
    keys = Keys(replica.cp.config.cluster_name)
    history = replica.cp.subscriptions.history
    revision = await replica.cp.etcd.put(keys.node("corrupt"), b"not json{")
    assert await replica.cp.cache.wait_for(revision)
    assert keys.node("corrupt") in replica.cp.cache.bad
    # Every revision reaches the subscription (other writers may have moved on meanwhile).
    assert replica.cp.subscriptions.state.revision == replica.cp.cache.revision >= revision
    assert revision not in [d.revision for d in history.since(0)]   # nothing to send for it
