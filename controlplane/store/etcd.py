"""A thin typed etcd v3 client over aetcd's generated stubs.

aetcd's high-level client hides what the control plane needs (the header revision of a
transaction, progress notifications, several endpoints, TLS), so this layer drives the stubs
itself on a channel it builds. Every etcd error that means "cannot reach etcd" becomes
`EtcdUnavailable` (an `Unavailable`: servicers answer UNAVAILABLE).
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aetcd import rpc  # type: ignore[import-untyped]

from bulkhead.errors import Exhausted, PermissionDenied, Unavailable

_UNREACHABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED}


class EtcdUnavailable(Unavailable):
    def __init__(self, detail: str) -> None:
        super().__init__(f"etcd unavailable: {detail}")


class EtcdSpaceExceeded(Exhausted):
    """etcd's space quota is reached (the NOSPACE alarm): it refuses every write until an
    operator compacts, defragments and disarms the alarm; reads go on."""

    def __init__(self) -> None:
        super().__init__(
            "etcd's space quota is exhausted (NOSPACE alarm): writes are refused until its "
            "history is compacted, its members defragmented and the alarm disarmed "
            "(etcdctl compact, etcdctl defrag, etcdctl alarm disarm); reads and enforcement "
            "go on")


class EtcdRequestTooLarge(Exhausted):
    """etcd refused a request larger than its --max-request-bytes (1.5 MiB unless set): a
    caller's value (a name of a million characters) must not reach it as INTERNAL."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the etcd request ({size} bytes) is larger than etcd accepts "
                         "(its --max-request-bytes, 1.5 MiB unless set; its gRPC limit, "
                         "2 MiB)")


class EtcdPermissionDenied(PermissionDenied):
    """etcd's own auth refused the request: the client certificate's CN names a user whose
    roles do not cover the key (a remote cluster's read-only credential writing, or reading
    outside what it was granted)."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"etcd refused the request: {detail}")


class TooManyOperations(Exception):
    """etcd refused a transaction with more compares or operations than its --max-txn-ops
    (DEFAULT_MAX_TXN_OPS unless the etcd was started with another value)."""


DEFAULT_MAX_TXN_OPS = 128


class Compacted(Exception):
    """The requested revision is older than etcd's compaction point."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revision compacted (compact revision {compact_revision})")
        self.compact_revision = compact_revision


@dataclass(frozen=True)
class TlsFiles:
    cacert: Path | None = None
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True)
class TlsPem:
    """TLS material as PEM bytes (a remote cluster's etcd, stored in the local etcd)."""

    cacert: bytes | None = None
    cert: bytes | None = None
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
class KV:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int
    version: int
    lease: int
    record: Any = field(default=None, compare=False, repr=False)
    """The decoded record, set by the cluster cache as it takes the KV in (it decodes every
    value once to check it), so readers of the cache need not decode it again."""

    @staticmethod
    def of(kv: Any) -> KV:
        return KV(kv.key.decode(), kv.value, kv.mod_revision, kv.create_revision, kv.version,
                  kv.lease)


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: list[Any]

    def range_kvs(self, index: int) -> list[KV]:
        """The KVs of the `index`-th response when it was a range (get) operation."""
        return [KV.of(kv) for kv in self.responses[index].response_range.kvs]


def prefix_end(prefix: str) -> bytes:
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return bytes(raw)


def _target(endpoints: Sequence[str]) -> tuple[str, bool]:
    """gRPC target for one or several etcd endpoints, and whether any asks for TLS."""
    tls = any(e.startswith("https://") for e in endpoints)
    hostports = [e.split("://", 1)[-1].rstrip("/") for e in endpoints]
    if len(hostports) == 1:
        return hostports[0], tls
    try:
        for hp in hostports:
            ipaddress.IPv4Address(hp.rsplit(":", 1)[0])
    except ValueError as exc:
        raise ValueError("several etcd endpoints must be given as IPv4:port") from exc
    return "ipv4:" + ",".join(hostports), tls


# -- operations and comparisons, as plain etcd protobufs -------------------------------------

def put(key: str, value: bytes, lease: int = 0) -> Any:
    return rpc.RequestOp(request_put=rpc.PutRequest(key=key.encode(), value=value, lease=lease))


def delete(key: str, *, prefix: bool = False) -> Any:
    request = rpc.DeleteRangeRequest(key=key.encode())
    if prefix:
        request.range_end = prefix_end(key)
    return rpc.RequestOp(request_delete_range=request)


def get(key: str, *, prefix: bool = False) -> Any:
    request = rpc.RangeRequest(key=key.encode())
    if prefix:
        request.range_end = prefix_end(key)
    return rpc.RequestOp(request_range=request)


def version_is(key: str, version: int, *, prefix: bool = False) -> Any:
    """`version == n`; with prefix and n == 0: no key under the prefix exists."""
    compare = rpc.Compare(key=key.encode(), result=rpc.Compare.EQUAL,
                          target=rpc.Compare.VERSION, version=version)
    if prefix:
        compare.range_end = prefix_end(key)
    return compare


def exists(key: str) -> Any:
    return rpc.Compare(key=key.encode(), result=rpc.Compare.GREATER,
                       target=rpc.Compare.VERSION, version=0)


def mod_revision_is(key: str, revision: int) -> Any:
    return rpc.Compare(key=key.encode(), result=rpc.Compare.EQUAL, target=rpc.Compare.MOD,
                       mod_revision=revision)


def value_is(key: str, value: bytes) -> Any:
    return rpc.Compare(key=key.encode(), result=rpc.Compare.EQUAL, target=rpc.Compare.VALUE,
                       value=value)


@dataclass(frozen=True)
class EtcdStatus:
    revision: int
    cluster_id: int
    version: str
    leader: int


class Etcd:
    """One channel to etcd (one or several members), with a per-call timeout."""

    def __init__(self, endpoints: Sequence[str], *, tls: TlsFiles | TlsPem | None = None,
                 timeout: float = 5.0) -> None:
        self.endpoints = list(endpoints)
        self.timeout = timeout
        target, wants_tls = _target(self.endpoints)
        # Reconnect quickly after an etcd restart, and let calls wait (within their timeout)
        # for the connection instead of failing while the channel is backing off.
        options = [("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000),
                   ("grpc.max_receive_message_length", 64 << 20),
                   ("grpc.initial_reconnect_backoff_ms", 100),
                   ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 1_000)]
        self._credentials: grpc.ChannelCredentials | None = None
        if isinstance(tls, TlsPem) and (wants_tls or tls.cacert or tls.cert):
            self._credentials = grpc.ssl_channel_credentials(
                root_certificates=tls.cacert, private_key=tls.key, certificate_chain=tls.cert)
        elif isinstance(tls, TlsFiles) and (wants_tls or tls.cacert or tls.cert):
            self._credentials = grpc.ssl_channel_credentials(
                root_certificates=tls.cacert.read_bytes() if tls.cacert else None,
                private_key=tls.key.read_bytes() if tls.key else None,
                certificate_chain=tls.cert.read_bytes() if tls.cert else None,
            )
        elif wants_tls:
            self._credentials = grpc.ssl_channel_credentials()
        if self._credentials is not None:
            self._channel = grpc.aio.secure_channel(target, self._credentials, options=options)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=options)
        self._target, self._options = target, options
        self._sync_channel: grpc.Channel | None = None
        self._kv = rpc.KVStub(self._channel)
        self._lease = rpc.LeaseStub(self._channel)
        self._watch = rpc.WatchStub(self._channel)
        self._maint = rpc.MaintenanceStub(self._channel)
        self._auth = rpc.AuthStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()
        if self._sync_channel is not None:
            self._sync_channel.close()

    async def _call(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        """Every unary etcd call has a deadline (`timeout`, else the client's): a stalled etcd
        fails the call with EtcdUnavailable naming the deadline, never hangs it."""
        deadline = timeout or self.timeout
        try:
            return await method(request, timeout=deadline, wait_for_ready=True)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise EtcdUnavailable(f"no answer within {deadline:g} s (the deadline of "
                                      "every etcd call)") from None
            if exc.code() in _UNREACHABLE:
                raise EtcdUnavailable(exc.details() or exc.code().name) from None
            if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
                raise EtcdPermissionDenied(exc.details() or "permission denied") from None
            if "required revision has been compacted" in (exc.details() or ""):
                raise Compacted(0) from None
            if "database space exceeded" in (exc.details() or ""):
                raise EtcdSpaceExceeded() from None
            if "too many operations in txn request" in (exc.details() or ""):
                raise TooManyOperations(exc.details()) from None
            if "request is too large" in (exc.details() or "") or (
                    exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    and "larger than max" in (exc.details() or "")):
                raise EtcdRequestTooLarge(request.ByteSize()) from None
            raise

    async def get(self, key: str) -> KV | None:
        response = await self._call(self._kv.Range, rpc.RangeRequest(key=key.encode()))
        return KV.of(response.kvs[0]) if response.kvs else None

    async def range(self, prefix: str, *, revision: int = 0, start: str | None = None,
                    limit: int = 0) -> tuple[list[KV], int, bool]:
        """KVs under prefix (from `start` on), the revision read, and whether more remain."""
        request = rpc.RangeRequest(key=(start or prefix).encode(), range_end=prefix_end(prefix),
                                   revision=revision, limit=limit)
        response = await self._call(self._kv.Range, request, timeout=self.timeout * 6)
        return [KV.of(kv) for kv in response.kvs], response.header.revision, response.more

    async def pages(self, prefix: str, *, revision: int = 0, limit: int = 5000
                    ) -> AsyncIterator[tuple[list[KV], int]]:
        """Everything under `prefix` in pages of at most `limit`, all at one revision (the
        given one, or the first page's): each page with that revision."""
        start: str | None = None
        while True:
            kvs, read_at, more = await self.range(prefix, revision=revision, start=start,
                                                  limit=limit)
            revision = revision or read_at
            yield kvs, revision
            if not more or not kvs:
                return
            start = kvs[-1].key + "\0"

    async def txn(self, compare: Sequence[Any], success: Sequence[Any],
                  failure: Sequence[Any] = ()) -> TxnResult:
        response = await self._call(
            self._kv.Txn, rpc.TxnRequest(compare=compare, success=success, failure=failure))
        return TxnResult(response.succeeded, response.header.revision, list(response.responses))

    async def put(self, key: str, value: bytes, lease: int = 0) -> int:
        response = await self._call(self._kv.Put,
                                    rpc.PutRequest(key=key.encode(), value=value, lease=lease))
        return int(response.header.revision)

    async def grant(self, ttl: int) -> int:
        response = await self._call(self._lease.LeaseGrant, rpc.LeaseGrantRequest(TTL=ttl))
        return int(response.ID)

    async def revoke(self, lease: int) -> None:
        try:
            await self._call(self._lease.LeaseRevoke, rpc.LeaseRevokeRequest(ID=lease))
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise

    async def keepalive(self, lease: int) -> int:
        """Renews the lease once; returns its TTL, or 0 when the lease is gone."""

        async def one() -> AsyncIterator[Any]:
            yield rpc.LeaseKeepAliveRequest(ID=lease)

        try:
            call = self._lease.LeaseKeepAlive(one(), timeout=self.timeout)
            async for response in call:
                return int(response.TTL)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _UNREACHABLE:
                raise EtcdUnavailable(exc.details() or exc.code().name) from None
            raise
        return 0

    async def status(self) -> EtcdStatus:
        response = await self._call(self._maint.Status, rpc.StatusRequest())
        return EtcdStatus(response.header.revision, response.header.cluster_id,
                          response.version, response.leader)

    async def auth(self, method: str, request: Any) -> Any:
        """One call of etcd's Auth service (`UserAdd`, `RoleGrantPermission`, `AuthEnable`
        ...), with the deadline and error mapping of every call (controlplane.store.etcdauth)."""
        return await self._call(getattr(self._auth, method), request)

    async def compact(self, revision: int) -> None:
        await self._call(self._kv.Compact, rpc.CompactionRequest(revision=revision,
                                                                 physical=True),
                         timeout=self.timeout * 6)

    def watch(self, prefix: str, start_revision: int, *, progress_notify: bool = True,
              ask_progress: asyncio.Queue[None] | None = None,
              end: bytes | None = None) -> grpc.aio.StreamStreamCall:
        """A raw watch stream of the prefix (with `end`: of the keys from `prefix` up to,
        not including, `end`); the caller iterates WatchResponses. Each item put on
        `ask_progress` requests a progress response (etcd sends it once every event up to its
        header revision was delivered)."""
        create = rpc.WatchCreateRequest(key=prefix.encode(),
                                        range_end=end or prefix_end(prefix),
                                        start_revision=start_revision,
                                        progress_notify=progress_notify)

        async def requests() -> AsyncIterator[Any]:
            yield rpc.WatchRequest(create_request=create)
            # Keep the request side open; closing it would end the watch.
            if ask_progress is None:
                await asyncio.Event().wait()
            while ask_progress is not None:
                await ask_progress.get()
                yield rpc.WatchRequest(progress_request=rpc.WatchProgressRequest())

        return self._watch.Watch(requests())

    def watch_blocking(self, prefix: str, start_revision: int, *,
                       progress_notify: bool = True) -> BlockingWatch:
        """The same watch on a synchronous channel, to be read from a thread: a reader that
        does not need an event-loop turn per response keeps up however busy the loop is."""
        if self._sync_channel is None:
            if self._credentials is not None:
                self._sync_channel = grpc.secure_channel(self._target, self._credentials,
                                                         options=self._options)
            else:
                self._sync_channel = grpc.insecure_channel(self._target, options=self._options)
        create = rpc.WatchCreateRequest(key=prefix.encode(), range_end=prefix_end(prefix),
                                        start_revision=start_revision,
                                        progress_notify=progress_notify)
        done = threading.Event()

        def requests() -> Iterator[Any]:
            yield rpc.WatchRequest(create_request=create)
            done.wait()  # keep the request side open; closing it would end the watch

        call = rpc.WatchStub(self._sync_channel).Watch(requests())
        return BlockingWatch(call, done)


class BlockingWatch:
    """Iterates WatchResponses (blocking); `cancel()` from any thread ends the iteration."""

    def __init__(self, call: Any, done: threading.Event) -> None:
        self._call = call
        self._done = done

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self._call
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code == grpc.StatusCode.CANCELLED and self._done.is_set():
                return
            details = exc.details() if hasattr(exc, "details") else str(exc)
            raise EtcdUnavailable(details or str(code)) from None

    def cancel(self) -> None:
        self._done.set()
        self._call.cancel()
