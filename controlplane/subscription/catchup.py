"""Resume from etcd's history: what a replica sends an agent whose token is older than the
replica's own in-memory history (a replica started a second ago, a rolling restart).

Instead of replaying every revision since the token, the replica reads the cluster as it was
at the token's revision (etcd keeps it until compaction) and compares it with now: every
shared object changed since then is sent as it is now, every one gone is removed, services
whose record or namespace's endpoints changed are sent again, and (when a policy, identity,
endpoint or service changed at all) the node's policies are sent for the identities it hosts
now, with removals for those it hosted then and no longer does, and (when a policy, identity
or node changed) the node's host policy as it is now.
The agent ends at the replica's revision with the state a fresh snapshot would give it, having
received only what changed. Only compaction (or another etcd cluster) forces a snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Past:
    """The cluster at a revision, and what a resume needs of it for every node alike."""

    items: dict[str, KV]
    hosted: dict[str, set[int]]
    """node -> identities it had endpoints of then."""


class PastReads:
    """One paged etcd read of the whole prefix per revision, shared by agents resuming
    together. Raises the store's Compacted when etcd no longer has that revision."""

    def __init__(self, etcd: Etcd, keys: Keys) -> None:
        self.etcd = etcd
        self.keys = keys
        self._reads: dict[int, asyncio.Future[Past]] = {}

    async def at(self, revision: int) -> Past:
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

    async def _read(self, revision: int) -> Past:
        items: dict[str, KV] = {}
        async for kvs, _ in self.etcd.pages(self.keys.prefix, revision=revision):
            items.update((kv.key, kv) for kv in kvs)
        hosted: dict[str, set[int]] = {}
        for key, kv in items.items():
            if key.startswith(self.keys.endpoints):
                try:
                    endpoint = Endpoint.of_kv(kv)
                except RecordError:
                    continue
                hosted.setdefault(endpoint.node, set()).add(endpoint.identity)
        return Past(items, hosted)


def _namespace(key: str, prefix: str) -> str:
    return key[len(prefix):].partition("/")[0]


def changes_since(state: SubscriptionState, now: Mapping[str, KV], past: Past, since: int,
                  node: str, keys: Keys) -> list[bytes]:
    """Framed changes that take an agent holding the state at `since` (`past`) for `node` to
    the state now (`now`, at `state.revision`). Synchronous: call it with no await between it
    and queueing its result, so nothing published meanwhile is missed or sent twice."""
    changed = [key for key, kv in now.items() if kv.mod_revision > since]
    gone = [key for key in past.items if key not in now]
    classify = state.classify
    framed = [put for key in changed if classify.kind(key) is not None
              and (put := state.objects.get(key)) is not None]
    for key in gone:
        kind = classify.kind(key)
        if kind is not None:
            framed.append(framing.change_field(
                content.delete_change(kind, past.items[key]).SerializeToString()))

    services, endpoints = keys.services, keys.endpoints
    touched = {_namespace(key, endpoints) for key in (*changed, *gone)
               if key.startswith(endpoints)}
    resend = {key[len(services):] for key in changed if key.startswith(services)}
    _global_service_inputs(keys, (*changed, *gone), resend, touched)
    for ref in state.services.refs():
        if ref in resend or services + ref not in past.items \
                or ref.partition("/")[0] in touched:
            put = state.objects.get(SERVICE_OBJECT + ref)
            if put is not None:
                framed.append(put)
    framed.extend(framing.change_field(
        pb.Change(service_removed=key[len(services):]).SerializeToString())
        for key in gone if key.startswith(services))

    policy_inputs = (keys.policies, keys.identity_ids, endpoints, services,
                     keys.mesh_mirrors)   # remote identities are peers too
    if any(key.startswith(policy_inputs) for key in (*changed, *gone)):
        framed.extend(state.policy_objects(node))
    host_inputs = (keys.policies, keys.identity_ids, keys.nodes, keys.mesh_mirrors)
    if state.host_policies is not None and any(
            key.startswith(host_inputs) for key in (*changed, *gone)):
        framed.append(state.host_object(node))   # the node's host policy as it is now
    hosted_now = set(state.interest.get(node, {}))
    framed.extend(framing.change_field(content.policy_removed(ident).SerializeToString())
                  for ident in sorted(past.hosted.get(node, set()) - hosted_now))
    return framed


def _global_service_inputs(keys: Keys, keys_changed: Iterable[str], resend: set[str],
                           touched: set[str]) -> None:
    """A remote cluster's mirrored service changes the local service of its namespace/name,
    a mirrored endpoint the services of its namespace (global services' remote backends)."""
    mirrors = keys.mesh_mirrors
    for key in keys_changed:
        if key.startswith(mirrors):
            kind, _, ref = key[len(mirrors):].partition("/")[2].partition("/")
            if kind == "services":
                resend.add(ref)
            elif kind == "endpoints":
                touched.add(ref.partition("/")[0])
