"""Every record the control plane keeps in etcd: its dataclass, its JSON encode and decode, and
the table that decodes each value as it enters a replica's cache (docs/etcd-layout.md).

This is the only module that knows a record's JSON keys. A record is written with
`record.encode()` and read with `<Kind>.decode(value)` (policies: `encode_policy`,
`decode_policy`); a value that does not decode raises `RecordError` saying why. The cluster
cache decodes every value of a kind in `TABLE` as it arrives and keeps a record that does not
decode apart (a bad record, reported by `bulkhead status` and `bulkhead_bad_records`), so every
view fed from the cache (lists, subscriptions, policy resolution, flow enrichment) sees only
records that decode and one bad key cannot stop a replica. The ipam claims (`ipam/node-ids/`,
`ipam/pod-cidrs/`, `ipam/service-ips/`, `ipam/service-ids/`) hold a plain name (a node's, a
service's "namespace/name"), not JSON, and are not in the table.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

from controlplane.policy.model import Policy
from controlplane.policy.parse import PolicyValidationError, canonical_json, parse_document

if TYPE_CHECKING:
    from controlplane.store.etcd import KV

REASON_MAX = 200
"""A reason quotes at most this many characters (it goes into logs and status)."""


class RecordError(ValueError):
    """A stored value that does not decode as its kind; the message says why."""


@dataclass(frozen=True, slots=True)
class BadRecord:
    key: str
    kind: str
    reason: str
    mod_revision: int


# -- the generic JSON object codec ------------------------------------------------------------

STR_LIST = "a list of strings"


@dataclass(frozen=True)
class ListOf:
    """A field holding a list of JSON objects of another record dataclass."""

    item: type[JsonRecord]


FieldType = type | str | ListOf


def _type_name(expected: FieldType) -> str:
    if isinstance(expected, ListOf):
        return "a list of objects"
    if isinstance(expected, str):
        return expected
    return {int: "an integer", str: "a string", bool: "a boolean"}.get(expected,
                                                                      expected.__name__)


def _field_type(hint: Any) -> FieldType:
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        return STR_LIST if item is str else ListOf(item)
    return typing.cast(type, hint)


@dataclass(frozen=True)
class _Spec:
    fields: dict[str, FieldType]
    required: frozenset[str]
    required_order: tuple[str, ...]
    nested: bool
    """Some field holds records (encoded field by field)."""


_SPECS: dict[type, _Spec] = {}


def _spec(cls: type) -> _Spec:
    """The record's JSON fields and their types; a field with a default may be absent (records
    written before it existed)."""
    found = _SPECS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)
        required = tuple(f.name for f in fields if f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
        types = {f.name: _field_type(hints[f.name]) for f in fields}
        found = _SPECS[cls] = _Spec(types, frozenset(required), required,
                                    any(isinstance(t, ListOf) for t in types.values()))
    return found


def _value(name: str, value: Any, expected: FieldType) -> Any:
    # JSON gives exact types: `type(...) is int` also refuses a boolean.
    if expected is str or expected is int or expected is bool:
        if type(value) is expected:
            return value
    elif expected is STR_LIST:
        if type(value) is list and all(type(v) is str for v in value):
            return tuple(value)
    elif isinstance(expected, ListOf):
        if type(value) is list:
            items = []
            for i, item in enumerate(value):
                try:
                    items.append(expected.item.of(item))
                except RecordError as exc:
                    raise RecordError(f"{name}[{i}]: {exc}") from None
            return tuple(items)
    raise RecordError(f"{name} is not {_type_name(expected)}")


def _plain(value: Any) -> Any:
    if isinstance(value, JsonRecord):
        return value._plain()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _load(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is one
        raise RecordError(f"not JSON: {str(exc)[:REASON_MAX]}") from None


class JsonRecord:
    """Base of a record stored as one JSON object whose keys are the dataclass's fields.

    `_closed`: a field the dataclass does not have makes the value undecodable (otherwise it
    is ignored). `key_problem` checks the decoded record against the rest of its key."""

    __slots__ = ()
    _closed: ClassVar[bool] = True
    _sort_keys: ClassVar[bool] = True

    def encode(self) -> bytes:
        return json.dumps(self._plain(), sort_keys=self._sort_keys).encode()

    def _plain(self) -> dict[str, Any]:
        """The fields as JSON values. Not dataclasses.asdict, which deep-copies every value and
        took a quarter of an identity allocation's own CPU (json.dumps takes tuples as lists)."""
        spec = _spec(type(self))
        if not spec.nested:
            return {name: getattr(self, name) for name in spec.fields}
        return {name: _plain(getattr(self, name)) for name in spec.fields}

    @classmethod
    def of_kv(cls, kv: KV) -> Self:
        """The record `kv` holds: the one the cache decoded as it took the KV in, else
        decoded now (a KV read straight from etcd)."""
        record = kv.record
        if type(record) is cls:
            return typing.cast(Self, record)
        return cls.decode(kv.value)

    @classmethod
    def decode(cls, raw: bytes, rest: str | None = None) -> Self:
        """The record `raw` holds; with `rest` (its key below the kind's prefix), also checked
        against its key. Raises RecordError."""
        return cls.of(_load(raw), rest)

    @classmethod
    def of(cls, data: Any, rest: str | None = None) -> Self:
        """The record of an already parsed JSON value."""
        if not isinstance(data, dict):
            raise RecordError(f"not a JSON object ({type(data).__name__})")
        spec = _spec(cls)
        if not spec.required <= data.keys():
            raise RecordError("missing " + ", ".join(n for n in spec.required_order
                                                      if n not in data))
        values = {}
        for name, value in data.items():
            expected = spec.fields.get(name)
            if expected is None:
                if cls._closed:
                    raise RecordError(f"unknown field {str(name)[:40]!r}")
                continue
            values[name] = _value(name, value, expected)
        record = cls(**values)
        if rest is not None and (why := record.key_problem(rest)) is not None:
            raise RecordError(why)
        return record

    def key_problem(self, rest: str) -> str | None:
        return None


# -- identities (identities/) -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class IdentityRecord(JsonRecord):
    """`identities/id/<id>`: an allocated identity's labels (canonical: sorted, filtered)."""

    _closed: ClassVar[bool] = False

    id: int
    labels: tuple[str, ...]

    def key_problem(self, rest: str) -> str | None:
        return None if str(self.id) == rest else "id is not its key's"


@dataclass(frozen=True, slots=True)
class IdentityLabelsRecord(JsonRecord):
    """`identities/labels/<label>;<label>...`: the id of a canonical label set."""

    _closed: ClassVar[bool] = False

    id: int


@dataclass(frozen=True, slots=True)
class IdentityRefRecord(JsonRecord):
    """`identities/refs/<id>/<holder>`: how many references the holder has on the id."""

    _closed: ClassVar[bool] = False

    count: int = 1

    def key_problem(self, rest: str) -> str | None:
        ident, _, holder = rest.partition("/")
        if not ident.isdecimal() or not holder:
            return "key is not refs/<id>/<holder>"
        return None


# -- nodes (nodes/, ipam/nodes/) --------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Node(JsonRecord):
    """`nodes/<name>`: a registered node, on its own lease."""

    name: str
    node_id: int
    underlay_ip: str
    pod_cidr: str
    tunnel_ip: str
    tunnel_port: int
    cluster: str
    lease: int
    agent_address: str = ""
    labels: tuple[str, ...] = ()
    """`key=value`, sorted: what host policies select the node by (`controlplane.nodes.labels`)"""
    agent_labels: tuple[str, ...] = ()
    """the labels the agent registered with, before the operator's changes"""

    def key_problem(self, rest: str) -> str | None:
        return None if self.name == rest else f"name {self.name[:80]!r} is not its key's"


@dataclass(frozen=True, slots=True)
class NodeLabelChanges(JsonRecord):
    """`node-labels/<name>`: the operator's `bulkhead node label` changes (unleased), applied
    over the agent's labels at every registration."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeAllocation(JsonRecord):
    """`ipam/nodes/<name>`: the id and pod CIDR a node keeps across registrations."""

    node_id: int
    pod_cidr: str


# -- endpoints and the ipcache (endpoints/, ipcache/) -----------------------------------------

@dataclass(frozen=True, slots=True)
class EndpointPort(JsonRecord):
    """A port a workload serves (a pod's container port): what a Service's named targetPort
    resolves to on this endpoint."""

    name: str
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class Endpoint(JsonRecord):
    """`endpoints/<namespace>/<name>`: a workload, on its node's lease."""

    namespace: str
    name: str
    node: str
    labels: tuple[str, ...]
    ip: str
    identity: int
    ports: tuple[EndpointPort, ...] = ()
    """Absent in records written before endpoints had ports."""

    def port_named(self, name: str, protocol: str) -> int:
        """The number of the port `name` serves for `protocol`, 0 when it has none."""
        return next((p.port for p in self.ports if p.name == name and p.protocol == protocol), 0)

    def key_problem(self, rest: str) -> str | None:
        return None if f"{self.namespace}/{self.name}" == rest else \
            "namespace/name is not its key's"


@dataclass(frozen=True, slots=True)
class IPCacheEntry(JsonRecord):
    """`ipcache/<ip>_<prefixlen>`: an address's identity and the node (tunnel) behind it."""

    prefix: str
    identity: int
    node: str
    tunnel_ip: str
    tunnel_port: int
    cluster: str

    def key_problem(self, rest: str) -> str | None:
        return None if self.prefix.replace("/", "_") == rest else "prefix is not its key's"


# -- subscription status (subscriptions/, subscription-replicas/) -----------------------------

@dataclass(frozen=True, slots=True)
class NodeStatus(JsonRecord):
    """A node's subscription status: `subscriptions/<node>` holds one (its final counters
    after a clean disconnect), a replica's `SubscriptionRecord` one per node it serves."""

    name: str
    replica: str = ""
    connected_since: str = ""
    acked_revision: int = 0
    lag_revisions: int = 0
    resumes: int = 0
    snapshots: int = 0
    connected: bool = False
    covered_revision: int = 0

    def key_problem(self, rest: str) -> str | None:
        return None if self.name == rest else f"name {self.name[:80]!r} is not its key's"


@dataclass(frozen=True, slots=True)
class SubscriptionRecord(JsonRecord):
    """`subscription-replicas/<replica id>`: every node a replica serves, on its lease."""

    replica: str
    nodes: tuple[NodeStatus, ...]


# -- replica presence (replicas/) -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PresenceRecord(JsonRecord):
    """`replicas/<replica id>`: a running control-plane replica, on its own short lease."""

    _sort_keys: ClassVar[bool] = False

    id: str
    address: str
    version: str
    started: str

    def key_problem(self, rest: str) -> str | None:
        return None if self.id == rest else f"id {self.id[:80]!r} is not its key's"


# -- the connectivity test's lock (connectivity/lock) -----------------------------------------

@dataclass(frozen=True, slots=True)
class LockRecord(JsonRecord):
    """`connectivity/lock`: the running `connectivity test`, on a lease its replica keeps
    alive (controlplane/connectivity/lock.py)."""

    holder: str
    since_ns: int
    replica: str


# -- join tokens (/bulkhead/pki/<cluster>/tokens/: outside the cluster prefix) ------------------

@dataclass(frozen=True, slots=True)
class JoinTokenRecord(JsonRecord):
    """`/bulkhead/pki/<cluster>/tokens/<id>` (controlplane.pki.tokens): a bootstrap token with
    its secret only as SHA-256; outside the cluster's prefix, so never in the cache."""

    id: str
    node: str       # "" when any node name may join with it
    expires: int    # unix seconds
    created: int
    sha256: str

    def key_problem(self, rest: str) -> str | None:
        return None if self.id == rest else f"id {self.id[:80]!r} is not its key's"


# -- policies (policies/) ---------------------------------------------------------------------

NAMESPACED = "CiliumNetworkPolicy"
CLUSTERWIDE = "CiliumClusterwideNetworkPolicy"


def encode_policy(policy: Policy) -> bytes:
    """The policy engine's canonical JSON: equal content, equal bytes (an unchanged apply
    writes nothing)."""
    return canonical_json(policy).encode()


def policy_of_kv(kv: KV) -> Policy:
    """The policy `kv` holds (decoded by the cache already, or now)."""
    return kv.record if isinstance(kv.record, Policy) else decode_policy(kv.value)


def decode_policy(raw: bytes, rest: str | None = None, kind: str | None = None) -> Policy:
    """The policy `raw` holds, parsed as an apply parses it; with `rest` and `kind` (from its
    key's prefix), also checked against its key. Raises RecordError."""
    data = _load(raw)
    if not isinstance(data, dict):
        raise RecordError(f"not a JSON object ({type(data).__name__})")
    missing = [name for name in ("apiVersion", "kind", "metadata") if name not in data]
    if missing:
        raise RecordError("missing " + ", ".join(missing))
    for name, expected in (("apiVersion", str), ("kind", str), ("metadata", dict)):
        if not isinstance(data[name], expected):
            raise RecordError(f"{name} is not {_type_name(expected)}")
    if kind is not None and rest is not None:
        if data["kind"] != kind:
            raise RecordError(f"kind {str(data['kind'])[:60]!r} is not {kind}")
        meta = data["metadata"]
        name, namespace = meta.get("name"), meta.get("namespace", "")
        if not isinstance(name, str) or not isinstance(namespace, str):
            raise RecordError("metadata.name/namespace are not strings")
        if (f"{namespace}/{name}" if kind == NAMESPACED else name) != rest:
            raise RecordError("metadata is not its key's")
    if "spec" not in data and "specs" not in data:
        raise RecordError("missing spec or specs")
    try:
        return parse_document(data)
    except PolicyValidationError as exc:
        raise RecordError(f"invalid policy: {exc}") from None


# -- services (services/, ipam/service-ips/, ipam/service-ids/) -----------------------------

@dataclass(frozen=True, slots=True)
class ServicePortRecord(JsonRecord):
    """One port of a service: the frontend port and the backends' port (a number, or the name
    of a container port)."""

    name: str
    port: int
    protocol: str
    target_port: int = 0
    target_port_name: str = ""


@dataclass(frozen=True, slots=True)
class ServiceRecord(JsonRecord):
    """`services/<namespace>/<name>`: a Kubernetes v1 Service (ClusterIP or headless) with the
    ClusterIP and frontend id it holds (claimed under `ipam/service-ips/<ip>` and
    `ipam/service-ids/<id>`, each holding "namespace/name"). Maps (selector, labels,
    annotations) are sorted "key=value" strings; backends are derived, never stored."""

    namespace: str
    name: str
    cluster_ip: str
    headless: bool
    id: int
    ports: tuple[ServicePortRecord, ...]
    selector: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    annotations: tuple[str, ...] = ()
    client_ip_affinity: bool = False

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def key_problem(self, rest: str) -> str | None:
        if self.ref != rest:
            return "namespace/name is not its key's"
        if self.headless != (self.cluster_ip == ""):
            return "a headless service has no cluster_ip, any other has one"
        return None


# -- clustermesh (/bulkhead/clusters/, clustermesh/) ---------------------------------------

@dataclass(frozen=True, slots=True)
class ClusterInfoRecord(JsonRecord):
    """`/bulkhead/clusters/<name>` (outside the cluster prefix): the cluster's name, id and pod
    pool, written by every replica at start; a cluster connecting to this one reads it to
    check for conflicts."""

    _closed: ClassVar[bool] = False

    name: str
    id: int
    pod_pool: str


@dataclass(frozen=True, slots=True)
class RemoteClusterRecord(JsonRecord):
    """`clustermesh/remotes/<name>`: a connected remote cluster and how to reach its etcd
    (read-only); the TLS material is PEM text, so any replica can use it."""

    name: str
    id: int
    pod_pool: str
    etcd_endpoints: tuple[str, ...]
    etcd_cacert: str = ""
    etcd_cert: str = ""
    etcd_key: str = ""
    connected: str = ""

    def key_problem(self, rest: str) -> str | None:
        return None if self.name == rest else f"name {self.name[:80]!r} is not its key's"


@dataclass(frozen=True, slots=True)
class MeshStatusRecord(JsonRecord):
    """`clustermesh/status/<name>`: the syncer's progress on a remote: the remote revision
    mirrored up to (where it resumes), whether it is in sync, its failures and last error."""

    _closed: ClassVar[bool] = False

    name: str
    revision: int = 0
    ready: bool = False
    last_sync: str = ""
    failures: int = 0
    last_error: str = ""
    replica: str = ""
    cluster_id: int = 0
    """The remote's cluster id (0 in records of older syncers); agents get it with `ready`
    (subscription RemoteClusterSync) for their sync grace."""

    def key_problem(self, rest: str) -> str | None:
        return None if self.name == rest else f"name {self.name[:80]!r} is not its key's"


MIRRORED: tuple[tuple[str, type[Node] | type[IPCacheEntry] | type[IdentityRecord]
                      | type[Endpoint] | type[ServiceRecord]], ...] = (
    ("nodes/", Node), ("ipcache/", IPCacheEntry), ("identities/id/", IdentityRecord),
    ("endpoints/", Endpoint), ("services/", ServiceRecord))
"""What a syncer mirrors of a remote cluster: the prefix below its cluster prefix, and the
record kept there. Endpoints and services are for global services (their backends are
derived from them as for local services, controlplane/services/globals.py); agents get the
first three kinds."""


def mirrored_kind(rest: str) -> str | None:
    """The remote prefix (`nodes/`, ...) of `rest` (a remote key below its cluster prefix),
    None when it is not mirrored."""
    return next((p for p, _ in MIRRORED if rest.startswith(p)), None)


def decode_mirrored(raw: bytes, rest: str) -> object:
    """`clustermesh/mirror/<remote>/<kind prefix><rest>`: decoded as the remote kind."""
    _remote, _, below = rest.partition("/")
    for prefix, record in MIRRORED:
        if below.startswith(prefix):
            return record.decode(raw, below[len(prefix):])
    raise RecordError("not a mirrored kind (nodes/, ipcache/, identities/id/, endpoints/, "
                      "services/)")


# -- the table --------------------------------------------------------------------------------

Decoder = Callable[[bytes, str], object]
"""(the value, its key below the kind's prefix) -> the record; raises RecordError."""

# (prefix below the cluster prefix, kind, decoder); the longest matching prefix applies.
TABLE: tuple[tuple[str, str, Decoder], ...] = (
    ("nodes/", "node", Node.decode),
    ("ipam/nodes/", "node_allocation", NodeAllocation.decode),
    ("node-labels/", "node_labels", NodeLabelChanges.decode),
    ("endpoints/", "endpoint", Endpoint.decode),
    ("ipcache/", "ipcache", IPCacheEntry.decode),
    ("identities/id/", "identity", IdentityRecord.decode),
    ("identities/labels/", "identity_labels", IdentityLabelsRecord.decode),
    ("identities/refs/", "identity_ref", IdentityRefRecord.decode),
    ("policies/namespaced/", "policy", functools.partial(decode_policy, kind=NAMESPACED)),
    ("policies/clusterwide/", "policy", functools.partial(decode_policy, kind=CLUSTERWIDE)),
    ("subscriptions/", "subscription_status", NodeStatus.decode),
    ("subscription-replicas/", "subscription_replica", SubscriptionRecord.decode),
    ("replicas/", "replica", PresenceRecord.decode),
    ("services/", "service", ServiceRecord.decode),
    ("clustermesh/remotes/", "clustermesh_remote", RemoteClusterRecord.decode),
    ("clustermesh/status/", "clustermesh_status", MeshStatusRecord.decode),
    ("clustermesh/mirror/", "clustermesh_mirror", decode_mirrored),
    ("connectivity/lock", "connectivity_lock", LockRecord.decode),
)


class Records:
    """The table bound to one cluster's key prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._table = sorted(((prefix + p, kind, decode) for p, kind, decode in TABLE),
                             key=lambda row: -len(row[0]))

    def kind(self, key: str) -> str | None:
        """The record kind `key` holds, None when the table does not check it."""
        for prefix, kind, _decode in self._table:
            if key.startswith(prefix):
                return kind
        return None

    def unreadable(self, key: str, value: bytes) -> str | None:
        """Why a record read straight from etcd cannot be used, naming its key; None if it
        can. For the API paths that read etcd rather than the cache."""
        found = self.problem(key, value)
        return None if found is None else f"stored record {key} is unreadable: {found[1]}"

    def problem(self, key: str, value: bytes) -> tuple[str, str] | None:
        """(kind, why) when the value does not decode as its key's kind; None when it does
        (or when the kind is not checked)."""
        return self.decode(key, value)[1]

    def decode(self, key: str, value: bytes) -> tuple[Any, tuple[str, str] | None]:
        """(the record, None) when the value decodes as its key's kind ((None, None) when the
        kind is not checked); (None, (kind, why)) when it does not."""
        for prefix, kind, decode in self._table:
            if key.startswith(prefix):
                try:
                    return decode(value, key[len(prefix):]), None
                except RecordError as exc:
                    return None, (kind, str(exc)[:REASON_MAX])
                except Exception as exc:   # a decoder's own failure must not stop the watch
                    return None, (kind, f"undecodable: {type(exc).__name__}: {exc}"[:REASON_MAX])
        return None, None
