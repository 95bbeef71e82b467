"""Resume from etcd's history: what a replica sends an agent whose token is older than the
replica's own in-memory history (a replica started a second ago, a rolling restart).

Instead of replaying every revision since the token, the replica reads the cluster as it was
at the token's revision (etcd keeps it until compaction) and compares it with now: every
shared object changed since then is sent as it is now, every one gone is removed, services
whose record or namespace's endpoints changed are sent again, and (when a policy, identity,
endpoint or service changed at all) the node's policies are sent for the identities it hosts
now, with removals for those it hosted then and no longer does.
The agent ends at the replica's revision with the state a fresh snapshot would give it, having
received only what changed. Only compaction (or another etcd cluster) forces a snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from bulkhead import log
from bulkhead.v1 import subscription_pb2 as pb
from controlplane.records.codec import Endpoint, RecordError
from controlplane.store.etcd import KV, Etcd
from controlplane.store.keys import Keys

from . import content, framing
from .state import SERVICE_OBJECT, SubscriptionState

_log = log.get(__name__)
PAST_KEEP = 5.0
"""Seconds a read of the past stays shared: agents resume together after a replica restart,
mostly from the same few revisions."""


class PastReads:
    """One paged etcd read of the whole prefix per revision, shared by agents resuming
    together. Raises the store's Compacted when etcd no longer has that revision."""

    def __init__(self, etcd: Etcd, prefix: str, page: int = 5000) -> None:
        self.etcd = etcd
        self.prefix = prefix
        self.page = page
        self._reads: dict[int, asyncio.Future[dict[str, KV]]] = {}

    async def at(self, revision: int) -> dict[str, KV]:
        pending = self._reads.get(revision)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = self._reads[revision] = loop.create_future()
            try:
                pending.set_result(await self._read(revision))
            except BaseException as exc:
                pending.set_exception(exc)
                with contextlib.suppress(BaseException):
                    pending.exception()          # retrieved here; each awaiter re-raises it
            finally:
                loop.call_later(PAST_KEEP, self._reads.pop, revision, None)
        return await asyncio.shield(pending)

    async def _read(self, revision: int) -> dict[str, KV]:
        items: dict[str, KV] = {}
        start: str | None = None
        while True:
            kvs, _, more = await self.etcd.range(self.prefix, revision=revision, start=start,
                                                 limit=self.page)
            items.update((kv.key, kv) for kv in kvs)
            if not more or not kvs:
                return items
            start = kvs[-1].key + "\0"


def _hosted(endpoints: Mapping[str, KV], node: str) -> set[int]:
    hosted: set[int] = set()
    for kv in endpoints.values():
        try:
            endpoint = Endpoint.of_kv(kv)
        except RecordError:
            continue
        if endpoint.node == node:
            hosted.add(endpoint.identity)
    return hosted


def changes_since(state: SubscriptionState, now: Mapping[str, KV], past: Mapping[str, KV],
                  since: int, node: str, keys: Keys) -> list[bytes]:
    """Framed changes that take an agent holding the state at `since` (`past`) for `node` to
    the state now (`now`, at `state.revision`). Synchronous: call it with no await between it
    and queueing its result, so nothing published meanwhile is missed or sent twice."""
    services_prefix = keys.services
    policy_inputs = (keys.policies, keys.identity_ids, keys.endpoints, keys.services,
                     keys.mesh_mirrors)   # remote identities are peers too
    framed: list[bytes] = []
    classify = state.classify
    for key, kv in now.items():
        if kv.mod_revision > since and classify.kind(key) is not None:
            put = state.objects.get(key)
            if put is not None:
                framed.append(put)
    for key, old in past.items():
        kind = classify.kind(key)
        if kind is not None and key not in now:
            framed.append(framing.change_field(
                content.delete_change(kind, old).SerializeToString()))

    endpoints = classify.endpoints
    touched_namespaces = {key[len(endpoints):].partition("/")[0]
                          for key, kv in now.items()
                          if key.startswith(endpoints) and kv.mod_revision > since}
    touched_namespaces |= {key[len(endpoints):].partition("/")[0]
                           for key in past if key.startswith(endpoints) and key not in now}
    for ref in state.services.refs():
        key = services_prefix + ref
        record = now.get(key)
        if (record is not None and record.mod_revision > since) or key not in past \
                or ref.partition("/")[0] in touched_namespaces:
            put = state.objects.get(SERVICE_OBJECT + ref)
            if put is not None:
                framed.append(put)
    for key in past:
        if key.startswith(services_prefix) and key not in now:
            framed.append(framing.change_field(
                pb.Change(service_removed=key[len(services_prefix):]).SerializeToString()))

    hosted_now = set(state.interest.get(node, {}))
    hosted_then = _hosted({k: v for k, v in past.items() if k.startswith(endpoints)}, node)
    if any(key.startswith(policy_inputs) and kv.mod_revision > since for key, kv in now.items()) \
            or any(key.startswith(policy_inputs) and key not in now for key in past):
        framed.extend(state.policy_objects(node))
    framed.extend(framing.change_field(content.policy_removed(ident).SerializeToString())
                  for ident in sorted(hosted_then - hosted_now))
    return framed
