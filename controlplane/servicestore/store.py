"""Services in etcd: apply (all Service documents in one transaction, or none), list, get,
delete. Modelled on the policy store (controlplane/policystore/store.py).

A new service claims its ClusterIP (`ipam/service-ips/<ip>`) and frontend id
(`ipam/service-ids/<id>`) in the transaction that stores it, each created only if absent; an
update keeps both and an identical apply writes nothing. Backends are not stored: list and get
take them from this replica's service index (controlplane/services/backends.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bulkhead import log
from bulkhead.errors import (
    AlreadyExists,
    Conflict,
    Exhausted,
    FieldViolation,
    Invalid,
    NotFound,
)
from bulkhead.v1 import types_pb2
from controlplane.parsepool import ParseTimeout, parse_off_loop
from controlplane.records.codec import RecordError, ServiceRecord
from controlplane.services.backends import ServiceIndex
from controlplane.services.model import ParsedFile, ServiceManifest
from controlplane.store import etcd as ops
from controlplane.store.cache import ClusterCache
from controlplane.store.etcd import KV, Etcd, TooManyOperations
from controlplane.store.keys import Keys
from controlplane.yamldocs import DocumentsError

from .allocation import ServiceRange, pick_id

_log = log.get(__name__)
MAX_ATTEMPTS = 16
READ_BATCH = 64


@dataclass(frozen=True)
class Applied:
    service: types_pb2.Service
    action: str   # created | configured | unchanged
    revision: int


@dataclass(frozen=True)
class ApplyResult:
    applied: list[Applied]
    revision: int
    notes: list[str] = field(default_factory=list)


def service_ref(namespace: str, name: str, path: str = "service") -> tuple[str, str]:
    """Validates a reference to one service."""
    problems = []
    if not namespace or len(namespace) > 63 or "/" in namespace or "\0" in namespace:
        problems.append(FieldViolation(f"{path}.namespace", "must be a namespace name"))
    if not name or len(name) > 63 or "/" in name or "\0" in name:
        problems.append(FieldViolation(f"{path}.name", "must be a service name"))
    if problems:
        raise Invalid(problems)
    return namespace, name


class ServiceStore:
    def __init__(self, etcd: Etcd, keys: Keys, cache: ClusterCache, index: ServiceIndex,
                 service_range: ServiceRange) -> None:
        self.etcd = etcd
        self.keys = keys
        self.cache = cache
        self.index = index
        self.range = service_range
        self._writing = asyncio.Lock()
        """One write at a time on this replica: applies here would all propose the same
        smallest free id and lose to each other in turn. Between replicas nothing is locked:
        the create-only claims decide and the loser proposes again."""

    # -- writes -------------------------------------------------------------------------------
    async def apply(self, text: str | bytes) -> ApplyResult:
        async with self._writing:
            return await self._apply(text)

    async def _apply(self, text: str | bytes) -> ApplyResult:
        try:
            parsed: ParsedFile = await parse_off_loop(text, "service")
        except DocumentsError as exc:
            raise Invalid(exc.violations, "invalid service, nothing stored") from None
        except ParseTimeout as exc:
            raise Exhausted(f"apply refused, nothing stored: {exc}; split the file") from None
        manifests = parsed.services
        self._check_requested(manifests)
        notes = [s.note() for s in parsed.skipped]
        keys = [self.keys.service(m.namespace, m.name) for m in manifests]
        for _ in range(MAX_ATTEMPTS):
            current = await self._read(keys)
            seen = max((kv.mod_revision for kv in current if kv is not None), default=0)
            if seen:
                await self.cache.wait_for(seen)
            records, fresh = self._plan(manifests, current)
            todo = [i for i, (kv, record) in enumerate(zip(current, records, strict=True))
                    if kv is None or kv.value != record.encode()]
            if not todo:
                return ApplyResult([self._applied(r, "unchanged", kv.mod_revision)
                                    for r, kv in zip(records, current, strict=True)
                                    if kv is not None], seen, notes)
            compare, success = [], []
            for i in todo:
                kv, record = current[i], records[i]
                success.append(ops.put(keys[i], record.encode()))
                compare.append(ops.mod_revision_is(keys[i], kv.mod_revision) if kv is not None
                               else ops.version_is(keys[i], 0))
                if i in fresh and not record.headless:
                    ref = record.ref.encode()
                    for claim in (self.keys.service_ip(record.cluster_ip),
                                  self.keys.service_id(record.id)):
                        compare.append(self._unclaimed(claim, ref))
                        success.append(ops.put(claim, ref))
            try:
                result = await self.etcd.txn(compare, success)
            except TooManyOperations:
                raise Invalid([FieldViolation("documents", (
                    f"{len(manifests)} services need one etcd transaction larger than this "
                    "etcd's --max-txn-ops allows; apply them in smaller files"))],
                    "apply refused, nothing stored") from None
            if not result.succeeded:
                # Another writer came first (a claim or a service changed): see what it wrote.
                await self.cache.wait_for(result.revision)
                continue
            await self.cache.wait_for(result.revision)
            applied = []
            for i, (kv, record) in enumerate(zip(current, records, strict=True)):
                if i in todo:
                    action = "configured" if kv is not None else "created"
                    applied.append(self._applied(record, action, result.revision))
                elif kv is not None:
                    applied.append(self._applied(record, "unchanged", kv.mod_revision))
            _log.info("services applied", revision=result.revision,
                      written=[records[i].ref for i in todo])
            return ApplyResult(applied, result.revision, notes)
        raise Conflict("service apply kept conflicting; retry")

    def _check_requested(self, manifests: list[ServiceManifest]) -> None:
        problems = []
        for m in manifests:
            if m.requested_ip and m.requested_ip not in self.range:
                problems.append(FieldViolation(
                    m.field("spec.clusterIP"),
                    f"{m.requested_ip} is not in the service CIDR {self.range.describe()}"))
        if problems:
            raise Invalid(problems, "invalid service, nothing stored")

    def _plan(self, manifests: list[ServiceManifest],
              current: list[KV | None]) -> tuple[list[ServiceRecord], set[int]]:
        """The record each manifest stores: an existing service keeps its ClusterIP and id, a
        new one (or one whose stored record is unreadable) gets the requested or a free
        address and the smallest free id; and the indexes of those that claim new ones."""
        ips = self._claims(self.keys.service_ips)
        ids = {int(k): v for k, v in self._claims(self.keys.service_ids).items() if k.isdecimal()}
        records: list[ServiceRecord] = []
        fresh: set[int] = set()
        problems: list[FieldViolation] = []
        for i, (manifest, kv) in enumerate(zip(manifests, current, strict=True)):
            old = self._decode(kv) if kv is not None else None
            if old is not None:
                if old.headless != manifest.headless:
                    problems.append(FieldViolation(manifest.field("spec.clusterIP"), (
                        "cannot change between headless (None) and a ClusterIP; delete the "
                        "service first")))
                elif manifest.requested_ip and manifest.requested_ip != old.cluster_ip:
                    problems.append(FieldViolation(manifest.field("spec.clusterIP"), (
                        f"is immutable: {manifest.ref} holds {old.cluster_ip}")))
                records.append(manifest.record(old.cluster_ip, old.id))
                continue
            if manifest.headless:
                records.append(manifest.record("", 0))
                continue
            if manifest.requested_ip:
                holder = ips.get(manifest.requested_ip)
                if holder is not None and holder != manifest.ref:
                    raise AlreadyExists(
                        f"{manifest.requested_ip} is taken by service {holder}, nothing stored",
                        [FieldViolation(manifest.field("spec.clusterIP"),
                                        f"{manifest.requested_ip} is taken by service {holder}")])
                ip = manifest.requested_ip
            else:
                ip = self.range.pick(set(ips))
            ident = pick_id(set(ids))
            ips[ip] = ids[ident] = manifest.ref   # taken for the next documents of this apply
            records.append(manifest.record(ip, ident))
            fresh.add(i)
        if problems:
            raise Invalid(problems, "invalid service, nothing stored")
        return records, fresh

    def _unclaimed(self, claim: str, ref: bytes) -> object:
        """The compare that takes a claim: absent, or already this service's (a claim left
        by a service stored around the API under the same name)."""
        kv = self.cache.items.get(claim)
        return ops.value_is(claim, ref) if kv is not None and kv.value == ref \
            else ops.version_is(claim, 0)

    def _claims(self, prefix: str) -> dict[str, str]:
        return {kv.key[len(prefix):]: kv.value.decode(errors="replace")
                for kv in self.cache.under(prefix)}

    async def delete(self, namespace: str, name: str) -> int:
        """Deletes the service and frees its ClusterIP and id; the revision written."""
        service_ref(namespace, name)
        key = self.keys.service(namespace, name)
        for _ in range(MAX_ATTEMPTS):
            kv = await self.etcd.get(key)
            if kv is None:
                raise NotFound(f"service {namespace}/{name} does not exist")
            record = self._decode(kv)
            success = [ops.delete(key)]
            if record is not None and not record.headless:
                success += [ops.delete(self.keys.service_ip(record.cluster_ip)),
                            ops.delete(self.keys.service_id(record.id))]
            result = await self.etcd.txn([ops.mod_revision_is(key, kv.mod_revision)], success)
            if not result.succeeded:
                continue
            await self.cache.wait_for(result.revision)
            _log.info("service deleted", service=f"{namespace}/{name}",
                      revision=result.revision)
            return result.revision
        raise Conflict("service delete kept conflicting; retry")

    # -- reads (this replica's cache, backends included) --------------------------------------
    def services(self, namespace: str = "") -> list[types_pb2.Service]:
        return [message for ref in self.index.refs()
                if not namespace or ref.partition("/")[0] == namespace
                if (message := self.index.message(ref)) is not None]

    def get(self, namespace: str, name: str) -> types_pb2.Service:
        service_ref(namespace, name)
        found = self.index.message(f"{namespace}/{name}")
        if found is None:
            raise NotFound(f"service {namespace}/{name} does not exist")
        return found

    def counts(self) -> tuple[int, int]:
        return self.index.counts()

    # -- internals ----------------------------------------------------------------------------
    def _applied(self, record: ServiceRecord, action: str, revision: int) -> Applied:
        found = self.index.message(record.ref)
        return Applied(found if found is not None else types_pb2.Service(
            namespace=record.namespace, name=record.name), action, revision)

    async def _read(self, keys: list[str]) -> list[KV | None]:
        current: list[KV | None] = []
        for start in range(0, len(keys), READ_BATCH):
            batch = keys[start:start + READ_BATCH]
            read = await self.etcd.txn([], [ops.get(k) for k in batch])
            current += [kvs[0] if kvs else None
                        for kvs in (read.range_kvs(i) for i in range(len(batch)))]
        return current

    @staticmethod
    def _decode(kv: KV) -> ServiceRecord | None:
        try:
            return ServiceRecord.of_kv(kv)
        except RecordError as exc:
            _log.warning("unreadable stored service", key=kv.key, error=str(exc)[:300])
            return None
