"""Policies in etcd: apply (all documents in one transaction, or none), list, get, delete, and
the read-side questions (resolve, trace) answered from this replica's resolver.

Values are the engine's canonical JSON, so identical content compares equal byte for byte and
re-applying it writes nothing. A policy's CIDR peers need CIDR identities: they are allocated
(holder `policy:<kind>/<namespace or ->/<name>`) before the policy is stored, and their
references are deleted in the same transaction that deletes the policy or stops naming them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol as TypingProtocol

from bulkhead import fqdnmatch, log
from bulkhead.errors import (
    Conflict,
    Exhausted,
    FailedPrecondition,
    FieldViolation,
    Invalid,
    NotFound,
)
from controlplane.identity.allocator import IdentityAllocator
from controlplane.identity.holders import policy_holder
from controlplane.identity.labels import parse_labels, with_cluster
from controlplane.policy.cidr import cidr_label
from controlplane.policy.hosts import HOST_IDENTITY
from controlplane.policy.model import Policy, PolicyKey, Protocol, ResolvedPolicy, Rule
from controlplane.policy.parse import CLUSTERWIDE_KIND, NAMESPACED_KIND, PolicyValidationError
from controlplane.policy.parsepool import ParseTimeout, parse_policies_off_loop
from controlplane.policy.repository import PolicyMapOverflow, cidr_prefixes
from controlplane.policy.trace import Trace, http_request, trace
from controlplane.records.codec import RecordError, decode_policy, encode_policy
from controlplane.store import etcd as ops
from controlplane.store.cache import ClusterCache
from controlplane.store.embedded import EMBEDDED_MAX_TXN_OPS
from controlplane.store.etcd import DEFAULT_MAX_TXN_OPS, KV, Etcd, TooManyOperations
from controlplane.store.keys import Keys

from .resolver import PolicyResolver


class HostChanges(TypingProtocol):
    def changed_between(self, after: int, upto: int) -> bool: ...

_log = log.get(__name__)
MAX_ATTEMPTS = 16
CLUSTERWIDE_NAMESPACE = "-"
"""Stands for "no namespace" where one is expected (list filter, reference holders)."""
_TRACE_PROTOCOLS = {"TCP": Protocol.TCP, "UDP": Protocol.UDP, "SCTP": Protocol.SCTP,
                    "ICMP": Protocol.ICMP}
"""ICMP: `dport` is the ICMP type (0-255), as `icmps` rules key it."""
READ_BATCH = 64
"""Gets per read transaction, well within any etcd's --max-txn-ops."""


def _too_big(documents: int, operations: int) -> Invalid:
    """An apply is one etcd transaction, all or nothing: one etcd cannot take refuses it."""
    return Invalid([FieldViolation("documents", (
        f"{documents} documents need one etcd transaction of {operations} operations (one per "
        f"changed policy, one per CIDR prefix it names), more than this etcd's --max-txn-ops "
        f"allows ({DEFAULT_MAX_TXN_OPS} unless set; the embedded etcd allows "
        f"{EMBEDDED_MAX_TXN_OPS}); apply them in smaller files"))],
        "apply refused, nothing stored")


def kind_of(key: PolicyKey) -> str:
    return CLUSTERWIDE_KIND if not key.namespace else NAMESPACED_KIND


def display(key: PolicyKey) -> str:
    return f"{key.namespace}/{key.name}" if key.namespace else f"{key.name} (clusterwide)"


def holder(key: PolicyKey) -> str:
    """The identity-reference holder of a policy's CIDR identities."""
    return policy_holder(kind_of(key), key.namespace or CLUSTERWIDE_NAMESPACE, key.name)


def policy_key(kind: str, namespace: str, name: str, field: str = "policy") -> PolicyKey:
    """Validates a reference to one policy. An empty kind follows the namespace."""
    problems = []
    if kind not in ("", NAMESPACED_KIND, CLUSTERWIDE_KIND):
        problems.append(FieldViolation(f"{field}.kind", f"must be {NAMESPACED_KIND} or "
                                                        f"{CLUSTERWIDE_KIND}, not {kind!r}"))
    if namespace == CLUSTERWIDE_NAMESPACE:
        namespace = ""
    if kind == CLUSTERWIDE_KIND and namespace:
        problems.append(FieldViolation(f"{field}.namespace",
                                       f"{CLUSTERWIDE_KIND} has no namespace"))
    if kind == NAMESPACED_KIND and not namespace:
        problems.append(FieldViolation(f"{field}.namespace", f"{NAMESPACED_KIND} needs one"))
    if not name or len(name) > 253 or "/" in name or "\0" in name:
        problems.append(FieldViolation(f"{field}.name", "must be a policy name"))
    if len(namespace) > 63 or "/" in namespace or "\0" in namespace:
        problems.append(FieldViolation(f"{field}.namespace", "must be a namespace name"))
    if problems:
        raise Invalid(problems)
    return PolicyKey(namespace, name)


@dataclass(frozen=True)
class PolicyRecord:
    policy: Policy
    revision: int
    created_revision: int

    @property
    def key(self) -> PolicyKey:
        return self.policy.key


@dataclass(frozen=True)
class Applied:
    record: PolicyRecord
    action: str   # created | configured | unchanged


@dataclass(frozen=True)
class ApplyResult:
    applied: list[Applied]
    revision: int
    affected: list[int]


@dataclass(frozen=True)
class DeleteResult:
    revision: int
    affected: list[int]
    released: list[int]


@dataclass(frozen=True)
class Resolution:
    identity: int
    labels: tuple[str, ...]
    resolved: ResolvedPolicy
    revision: int
    peer_fqdns: Mapping[int, str] = field(default_factory=dict)
    """peer identity -> the toFQDNs pattern it stands for (`fqdn:` identities only)"""


@dataclass(frozen=True)
class TraceResult:
    trace: Trace
    src: tuple[str, ...]
    dst: tuple[str, ...]


class PolicyStore:
    def __init__(self, etcd: Etcd, keys: Keys, cache: ClusterCache, resolver: PolicyResolver,
                 allocator: IdentityAllocator) -> None:
        self.etcd = etcd
        self.keys = keys
        self.cache = cache
        self.resolver = resolver
        self.allocator = allocator
        self.hosts: HostChanges | None = None
        """The host-policy stage (controlplane/policystore/hoststage.py), once wired."""

    # -- writes -------------------------------------------------------------------------------
    async def apply(self, text: str | bytes) -> ApplyResult:
        """Parse, check, allocate CIDR identities, one transaction, wait: all or nothing."""
        policies = await self._parse(text)
        keys = [self.keys.policy(p.key.namespace, p.key.name) for p in policies]
        values = [encode_policy(p) for p in policies]
        held: set[str] = set()   # CIDR identity references taken, dropped again on failure
        try:
            for _ in range(MAX_ATTEMPTS):
                current, seen = await self._read_settled(keys)
                todo = [i for i, kv in enumerate(current) if kv is None or kv.value != values[i]]
                if not todo:
                    return await self._unchanged(policies, current, seen, held)
                self._check([policies[i] for i in todo])
                start = self.cache.revision
                refs = {i: await self._hold_cidrs(policies[i], held) for i in todo}
                revision = await self._write(keys, values, current, refs, len(policies))
                if revision is None:
                    continue  # raced with another writer of these policies: read again
                await self.cache.wait_for(revision)
                return self._applied(policies, current, todo, revision, start)
            raise Conflict("policy apply kept conflicting; retry")
        except BaseException:
            if held:
                await self._drop_unused(policies, held)
            raise

    @staticmethod
    async def _parse(text: str | bytes) -> list[Policy]:
        try:
            return await parse_policies_off_loop(text)
        except PolicyValidationError as exc:
            raise Invalid(exc.violations, "invalid policy") from None
        except ParseTimeout as exc:
            raise Exhausted(f"apply refused, nothing stored: {exc}; split the file") from None

    async def _read_settled(self, keys: list[str]) -> tuple[list[KV | None], int]:
        """The current KVs and the newest revision among them, once the resolver (which the
        check runs on) knows at least what was read."""
        current = await self._read(keys)
        seen = max((kv.mod_revision for kv in current if kv is not None), default=0)
        if seen:
            await self.cache.wait_for(seen)
        return current, seen

    async def _unchanged(self, policies: list[Policy], current: list[KV | None], seen: int,
                         held: set[str]) -> ApplyResult:
        for policy in policies:
            if self.resolver.waits(policy.key):
                # Stored around the API without its CIDR identities: allocate them.
                await self._hold_cidrs(policy, held)
        applied = [Applied(PolicyRecord(p, kv.mod_revision, kv.create_revision), "unchanged")
                   for p, kv in zip(policies, current, strict=True) if kv is not None]
        return ApplyResult(applied, seen, [])

    def _check(self, policies: list[Policy]) -> None:
        overflows = self.resolver.check(policies)
        if overflows:
            raise FailedPrecondition(
                f"apply refused, nothing stored: {PolicyMapOverflow(overflows)}")

    async def _write(self, keys: list[str], values: list[bytes], current: list[KV | None],
                     refs: dict[int, dict[str, str]], documents: int) -> int | None:
        """One transaction: each changed policy (if still as read), the references of the
        prefixes it names (if still there) and the deletion of those it stops naming. The
        revision written, or None when another writer came first."""
        compare, success = [], []
        for i, held in refs.items():
            kv = current[i]
            compare.append(ops.mod_revision_is(keys[i], kv.mod_revision) if kv is not None
                           else ops.version_is(keys[i], 0))
            success.append(ops.put(keys[i], values[i]))
            compare += [ops.exists(ref) for ref in held.values()]
            old = self._decode(kv) if kv is not None else None
            if old is not None:
                success += [ops.delete(ref) for prefix, ref in self._refs(old).items()
                            if prefix not in held]
        try:
            result = await self.etcd.txn(compare, success)
        except TooManyOperations:
            raise _too_big(documents, max(len(compare), len(success))) from None
        return result.revision if result.succeeded else None

    def _applied(self, policies: list[Policy], current: list[KV | None], todo: list[int],
                 revision: int, start: int) -> ApplyResult:
        applied = []
        for i, (policy, kv) in enumerate(zip(policies, current, strict=True)):
            if i in todo:
                created = kv.create_revision if kv is not None else revision
                applied.append(Applied(PolicyRecord(policy, revision, created),
                                       "configured" if kv is not None else "created"))
            elif kv is not None:
                applied.append(Applied(PolicyRecord(policy, kv.mod_revision,
                                                    kv.create_revision), "unchanged"))
        affected = sorted(self._affected(start, revision))
        _log.info("policies applied", revision=revision,
                  written=[display(policies[i].key) for i in todo], affected=len(affected))
        return ApplyResult(applied, revision, affected)

    def _affected(self, after: int, upto: int) -> set[int]:
        """Identities whose policy changed in (after, upto]; the host identity too when some
        node's host policy changed (its nodes then have something to ack)."""
        found = self.resolver.affected_between(after, upto)
        if self.hosts is not None and self.hosts.changed_between(after, upto):
            found.add(HOST_IDENTITY)
        return found

    async def delete(self, key: PolicyKey) -> DeleteResult:
        etcd_key = self.keys.policy(key.namespace, key.name)
        for _ in range(MAX_ATTEMPTS):
            kv = await self.etcd.get(etcd_key)
            if kv is None:
                raise NotFound(f"policy {display(key)} does not exist")
            # The CIDR identities it holds were allocated before it was stored.
            await self.cache.wait_for(kv.mod_revision)
            policy = self._decode(kv)
            refs = self._refs(policy) if policy is not None else {}
            start = self.cache.revision
            result = await self.etcd.txn([ops.mod_revision_is(etcd_key, kv.mod_revision)],
                                         [ops.delete(etcd_key)] +
                                         [ops.delete(ref) for ref in refs.values()])
            if not result.succeeded:
                continue
            await self.cache.wait_for(result.revision)
            released = sorted(i for p in refs if (i := self.resolver.cidr_of(p)) is not None)
            affected = sorted(self._affected(start, result.revision))
            _log.info("policy deleted", policy=display(key), revision=result.revision,
                      released=released)
            return DeleteResult(result.revision, affected, released)
        raise Conflict("policy delete kept conflicting; retry")

    # -- reads --------------------------------------------------------------------------------
    async def policies(self, namespace: str = "") -> list[PolicyRecord]:
        prefix = self.keys.policies
        if namespace == CLUSTERWIDE_NAMESPACE:
            prefix = self.keys.clusterwide_policies
        elif namespace:
            prefix = f"{self.keys.namespaced_policies}{namespace}/"
        kvs, _, _ = await self.etcd.range(prefix)
        records = []
        for kv in kvs:
            policy = self._decode(kv)
            if policy is not None:
                records.append(PolicyRecord(policy, kv.mod_revision, kv.create_revision))
        return sorted(records, key=lambda r: r.key)

    async def get(self, key: PolicyKey) -> PolicyRecord:
        kv = await self.etcd.get(self.keys.policy(key.namespace, key.name))
        policy = self._decode(kv) if kv is not None else None
        if kv is None or policy is None:
            raise NotFound(f"policy {display(key)} does not exist")
        return PolicyRecord(policy, kv.mod_revision, kv.create_revision)

    def resolve(self, identity: int) -> Resolution:
        labels = self.allocator.get(identity).labels   # NOT_FOUND if there is no such identity
        resolved = self.resolver.resolved(identity, origins=True)
        fqdns = {}
        for peer in {e.peer for e in resolved.entries if e.peer}:
            found = [p for label in self.allocator.index.labels_of(peer) or ()
                     if (p := fqdnmatch.pattern_of(label)) is not None]
            if found:
                fqdns[peer] = found[0]
        return Resolution(identity, labels, resolved, self.resolver.revision, fqdns)

    def trace(self, src: list[str], dst: list[str], dport: int, protocol: str,
              http: tuple[str, str, str, list[str]] = ("", "", "", []),
              rules: Iterable[Rule] | None = None) -> TraceResult:
        """`http`: method, path, host, headers of an HTTP request on the connection (all empty:
        none). `rules`: trace against these instead of the stored policies' (a proposed set,
        controlplane/policystore/impact.py)."""
        label_filter = self.allocator.label_filter
        src_set, problems = parse_labels(src, "src_labels", label_filter)
        dst_set, more = parse_labels(dst, "dst_labels", label_filter)
        problems += more
        proto = _TRACE_PROTOCOLS.get(protocol.upper())
        if proto is Protocol.ICMP:
            if not 0 <= dport <= 255:
                problems.append(FieldViolation("dport", "must be an ICMP type 0-255 with ICMP"))
        elif not 1 <= dport <= 65535:
            problems.append(FieldViolation("dport", "must be 1-65535"))
        if proto is None:
            problems.append(FieldViolation("protocol", f"must be TCP, UDP, SCTP or ICMP, not "
                                                       f"{protocol!r}"))
        request, more = http_request(*http)
        problems += more
        if request is not None and proto not in (None, Protocol.TCP):
            problems.append(FieldViolation("protocol", "must be TCP for an HTTP request"))
        if problems or proto is None:
            raise Invalid(problems)
        destination = self.allocator.index.by_labels.get(dst_set.key)
        if destination is None:
            # Endpoints' identities carry their cluster's label; a traced set without one
            # names a local endpoint (whose named ports the trace needs).
            local, _ = parse_labels(with_cluster(dst, self.keys.cluster), "dst_labels",
                                    label_filter)
            destination = self.allocator.index.by_labels.get(local.key)
        named = (self.resolver.named_ports(destination) if destination is not None else {},
                 self.resolver.named_ports())
        result = trace(self.resolver.rules() if rules is None else rules, src_set.labels,
                       dst_set.labels, dport, int(proto), request, named)
        return TraceResult(result, src_set.labels, dst_set.labels)

    # -- internals ----------------------------------------------------------------------------
    async def _read(self, keys: list[str]) -> list[KV | None]:
        """The current KV of each key (None: absent), READ_BATCH gets per transaction. The
        write compares each key's revision, so the batches need not be one snapshot."""
        current: list[KV | None] = []
        for start in range(0, len(keys), READ_BATCH):
            batch = keys[start:start + READ_BATCH]
            read = await self.etcd.txn([], [ops.get(k) for k in batch])
            current += [kvs[0] if kvs else None
                        for kvs in (read.range_kvs(i) for i in range(len(batch)))]
        return current

    async def _hold_cidrs(self, policy: Policy, held: set[str]) -> dict[str, str]:
        """Allocates (or keeps) one reference per prefix, noting each in `held`; prefix ->
        reference key."""
        refs = {}
        for prefix in cidr_prefixes(policy):
            ident = await self.allocator.allocate([cidr_label(prefix)], holder(policy.key),
                                                  single=True)
            refs[prefix] = self.allocator.reference_key(ident.id, holder(policy.key))
            held.add(refs[prefix])
        return refs

    async def _drop_unused(self, policies: list[Policy], held: set[str]) -> None:
        """After a failed apply: drops the references it took that no stored policy holds."""
        try:
            needed: set[str] = set()
            for policy in policies:
                kv = await self.etcd.get(self.keys.policy(policy.key.namespace, policy.key.name))
                stored = self._decode(kv) if kv is not None else None
                if stored is not None:
                    needed.update(self._refs(stored).values())
            unused = sorted(held - needed)
            for start in range(0, len(unused), READ_BATCH):  # within any --max-txn-ops
                await self.etcd.txn([], [ops.delete(ref)
                                         for ref in unused[start:start + READ_BATCH]])
        except Exception as exc:
            _log.warning("could not drop CIDR identity references of a failed apply",
                         refs=sorted(held), error=str(exc))

    def _refs(self, policy: Policy) -> dict[str, str]:
        """The reference keys `policy` holds, for the prefixes whose identity is known."""
        refs = {}
        for prefix in cidr_prefixes(policy):
            ident = self.resolver.cidr_of(prefix)
            if ident is not None:
                refs[prefix] = self.allocator.reference_key(ident, holder(policy.key))
        return refs

    def _decode(self, kv: KV) -> Policy | None:
        known = self.resolver.stored(self._key_from(kv.key))
        if known is not None and known.kv.mod_revision == kv.mod_revision:
            return known.policy
        try:
            return decode_policy(kv.value)
        except RecordError as exc:
            _log.warning("unreadable stored policy", key=kv.key, error=str(exc)[:300])
            return None

    def _key_from(self, etcd_key: str) -> PolicyKey:
        if etcd_key.startswith(self.keys.clusterwide_policies):
            return PolicyKey("", etcd_key[len(self.keys.clusterwide_policies):])
        rest = etcd_key[len(self.keys.namespaced_policies):]
        namespace, _, name = rest.partition("/")
        return PolicyKey(namespace, name)
