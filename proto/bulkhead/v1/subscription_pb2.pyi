from bulkhead.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResumeToken(_message.Message):
    __slots__ = ("etcd_cluster_id", "revision")
    ETCD_CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    etcd_cluster_id: int
    revision: int
    def __init__(self, etcd_cluster_id: _Optional[int] = ..., revision: _Optional[int] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("node", "capabilities", "resume")
    NODE_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    node: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    resume: ResumeToken
    def __init__(self, node: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., resume: _Optional[_Union[ResumeToken, _Mapping]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class Nack(_message.Message):
    __slots__ = ("revision", "error")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    revision: int
    error: str
    def __init__(self, revision: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("hello", "ack", "nack")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    NACK_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    ack: Ack
    nack: Nack
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., nack: _Optional[_Union[Nack, _Mapping]] = ...) -> None: ...

class PolicyEntry(_message.Message):
    __slots__ = ("direction", "peer", "protocol", "port_lo", "port_hi", "verdict", "l7", "http")
    class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        INGRESS: _ClassVar[PolicyEntry.Direction]
        EGRESS: _ClassVar[PolicyEntry.Direction]
    INGRESS: PolicyEntry.Direction
    EGRESS: PolicyEntry.Direction
    class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ALLOW: _ClassVar[PolicyEntry.Verdict]
        DENY: _ClassVar[PolicyEntry.Verdict]
    ALLOW: PolicyEntry.Verdict
    DENY: PolicyEntry.Verdict
    class L7(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        NONE: _ClassVar[PolicyEntry.L7]
        HTTP: _ClassVar[PolicyEntry.L7]
    NONE: PolicyEntry.L7
    HTTP: PolicyEntry.L7
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    PORT_LO_FIELD_NUMBER: _ClassVar[int]
    PORT_HI_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    L7_FIELD_NUMBER: _ClassVar[int]
    HTTP_FIELD_NUMBER: _ClassVar[int]
    direction: PolicyEntry.Direction
    peer: int
    protocol: int
    port_lo: int
    port_hi: int
    verdict: PolicyEntry.Verdict
    l7: PolicyEntry.L7
    http: _containers.RepeatedCompositeFieldContainer[HttpRule]
    def __init__(self, direction: _Optional[_Union[PolicyEntry.Direction, str]] = ..., peer: _Optional[int] = ..., protocol: _Optional[int] = ..., port_lo: _Optional[int] = ..., port_hi: _Optional[int] = ..., verdict: _Optional[_Union[PolicyEntry.Verdict, str]] = ..., l7: _Optional[_Union[PolicyEntry.L7, str]] = ..., http: _Optional[_Iterable[_Union[HttpRule, _Mapping]]] = ...) -> None: ...

class HttpRule(_message.Message):
    __slots__ = ("method", "path", "host", "headers", "header_matches")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    HEADER_MATCHES_FIELD_NUMBER: _ClassVar[int]
    method: str
    path: str
    host: str
    headers: _containers.RepeatedScalarFieldContainer[str]
    header_matches: _containers.RepeatedCompositeFieldContainer[HttpHeaderMatch]
    def __init__(self, method: _Optional[str] = ..., path: _Optional[str] = ..., host: _Optional[str] = ..., headers: _Optional[_Iterable[str]] = ..., header_matches: _Optional[_Iterable[_Union[HttpHeaderMatch, _Mapping]]] = ...) -> None: ...

class HttpHeaderMatch(_message.Message):
    __slots__ = ("name", "value", "mismatch")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    MISMATCH_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    mismatch: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ..., mismatch: _Optional[str] = ...) -> None: ...

class IdentityPolicy(_message.Message):
    __slots__ = ("identity", "ingress_enforced", "egress_enforced", "entries", "dns_patterns")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    INGRESS_ENFORCED_FIELD_NUMBER: _ClassVar[int]
    EGRESS_ENFORCED_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    DNS_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    identity: int
    ingress_enforced: bool
    egress_enforced: bool
    entries: _containers.RepeatedCompositeFieldContainer[PolicyEntry]
    dns_patterns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, identity: _Optional[int] = ..., ingress_enforced: _Optional[bool] = ..., egress_enforced: _Optional[bool] = ..., entries: _Optional[_Iterable[_Union[PolicyEntry, _Mapping]]] = ..., dns_patterns: _Optional[_Iterable[str]] = ...) -> None: ...

class Change(_message.Message):
    __slots__ = ("node", "ipcache", "identity", "policy", "node_removed", "ipcache_removed", "identity_removed", "policy_removed", "service", "service_removed", "remote_cluster", "remote_cluster_removed", "host_policy")
    NODE_FIELD_NUMBER: _ClassVar[int]
    IPCACHE_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    NODE_REMOVED_FIELD_NUMBER: _ClassVar[int]
    IPCACHE_REMOVED_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_REMOVED_FIELD_NUMBER: _ClassVar[int]
    POLICY_REMOVED_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_REMOVED_FIELD_NUMBER: _ClassVar[int]
    REMOTE_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    REMOTE_CLUSTER_REMOVED_FIELD_NUMBER: _ClassVar[int]
    HOST_POLICY_FIELD_NUMBER: _ClassVar[int]
    node: _types_pb2.Node
    ipcache: _types_pb2.IPCacheEntry
    identity: _types_pb2.Identity
    policy: IdentityPolicy
    node_removed: str
    ipcache_removed: str
    identity_removed: int
    policy_removed: int
    service: _types_pb2.Service
    service_removed: str
    remote_cluster: RemoteClusterSync
    remote_cluster_removed: str
    host_policy: NodeHostPolicy
    def __init__(self, node: _Optional[_Union[_types_pb2.Node, _Mapping]] = ..., ipcache: _Optional[_Union[_types_pb2.IPCacheEntry, _Mapping]] = ..., identity: _Optional[_Union[_types_pb2.Identity, _Mapping]] = ..., policy: _Optional[_Union[IdentityPolicy, _Mapping]] = ..., node_removed: _Optional[str] = ..., ipcache_removed: _Optional[str] = ..., identity_removed: _Optional[int] = ..., policy_removed: _Optional[int] = ..., service: _Optional[_Union[_types_pb2.Service, _Mapping]] = ..., service_removed: _Optional[str] = ..., remote_cluster: _Optional[_Union[RemoteClusterSync, _Mapping]] = ..., remote_cluster_removed: _Optional[str] = ..., host_policy: _Optional[_Union[NodeHostPolicy, _Mapping]] = ...) -> None: ...

class RemoteClusterSync(_message.Message):
    __slots__ = ("name", "cluster_id", "ready")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    name: str
    cluster_id: int
    ready: bool
    def __init__(self, name: _Optional[str] = ..., cluster_id: _Optional[int] = ..., ready: _Optional[bool] = ...) -> None: ...

class HostEntry(_message.Message):
    __slots__ = ("direction", "peer", "peer_node", "protocol", "port_lo", "port_hi", "verdict")
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    PEER_NODE_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    PORT_LO_FIELD_NUMBER: _ClassVar[int]
    PORT_HI_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    direction: PolicyEntry.Direction
    peer: int
    peer_node: str
    protocol: int
    port_lo: int
    port_hi: int
    verdict: PolicyEntry.Verdict
    def __init__(self, direction: _Optional[_Union[PolicyEntry.Direction, str]] = ..., peer: _Optional[int] = ..., peer_node: _Optional[str] = ..., protocol: _Optional[int] = ..., port_lo: _Optional[int] = ..., port_hi: _Optional[int] = ..., verdict: _Optional[_Union[PolicyEntry.Verdict, str]] = ...) -> None: ...

class NodeHostPolicy(_message.Message):
    __slots__ = ("node", "ingress_enforced", "egress_enforced", "entries")
    NODE_FIELD_NUMBER: _ClassVar[int]
    INGRESS_ENFORCED_FIELD_NUMBER: _ClassVar[int]
    EGRESS_ENFORCED_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    node: str
    ingress_enforced: bool
    egress_enforced: bool
    entries: _containers.RepeatedCompositeFieldContainer[HostEntry]
    def __init__(self, node: _Optional[str] = ..., ingress_enforced: _Optional[bool] = ..., egress_enforced: _Optional[bool] = ..., entries: _Optional[_Iterable[_Union[HostEntry, _Mapping]]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("replica", "etcd_cluster_id", "resumed", "revision")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    ETCD_CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    replica: str
    etcd_cluster_id: int
    resumed: bool
    revision: int
    def __init__(self, replica: _Optional[str] = ..., etcd_cluster_id: _Optional[int] = ..., resumed: _Optional[bool] = ..., revision: _Optional[int] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("revision", "objects")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    OBJECTS_FIELD_NUMBER: _ClassVar[int]
    revision: int
    objects: _containers.RepeatedCompositeFieldContainer[Change]
    def __init__(self, revision: _Optional[int] = ..., objects: _Optional[_Iterable[_Union[Change, _Mapping]]] = ...) -> None: ...

class Synced(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class Delta(_message.Message):
    __slots__ = ("revision", "changes")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    revision: int
    changes: _containers.RepeatedCompositeFieldContainer[Change]
    def __init__(self, revision: _Optional[int] = ..., changes: _Optional[_Iterable[_Union[Change, _Mapping]]] = ...) -> None: ...

class DeltaBatch(_message.Message):
    __slots__ = ("deltas",)
    DELTAS_FIELD_NUMBER: _ClassVar[int]
    deltas: _containers.RepeatedCompositeFieldContainer[Delta]
    def __init__(self, deltas: _Optional[_Iterable[_Union[Delta, _Mapping]]] = ...) -> None: ...

class Bookmark(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class Reset(_message.Message):
    __slots__ = ("reason", "detail")
    class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNSPECIFIED: _ClassVar[Reset.Reason]
        TOO_OLD: _ClassVar[Reset.Reason]
        SLOW_CONSUMER: _ClassVar[Reset.Reason]
        CLUSTER_ID_CHANGED: _ClassVar[Reset.Reason]
        RELISTED: _ClassVar[Reset.Reason]
    UNSPECIFIED: Reset.Reason
    TOO_OLD: Reset.Reason
    SLOW_CONSUMER: Reset.Reason
    CLUSTER_ID_CHANGED: Reset.Reason
    RELISTED: Reset.Reason
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    reason: Reset.Reason
    detail: str
    def __init__(self, reason: _Optional[_Union[Reset.Reason, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("welcome", "snapshot", "synced", "deltas", "bookmark", "reset")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    SYNCED_FIELD_NUMBER: _ClassVar[int]
    DELTAS_FIELD_NUMBER: _ClassVar[int]
    BOOKMARK_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    snapshot: SnapshotChunk
    synced: Synced
    deltas: DeltaBatch
    bookmark: Bookmark
    reset: Reset
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., snapshot: _Optional[_Union[SnapshotChunk, _Mapping]] = ..., synced: _Optional[_Union[Synced, _Mapping]] = ..., deltas: _Optional[_Union[DeltaBatch, _Mapping]] = ..., bookmark: _Optional[_Union[Bookmark, _Mapping]] = ..., reset: _Optional[_Union[Reset, _Mapping]] = ...) -> None: ...

class NodeSubscription(_message.Message):
    __slots__ = ("name", "replica", "connected_since", "acked_revision", "lag_revisions", "resumes", "snapshots", "connected")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_SINCE_FIELD_NUMBER: _ClassVar[int]
    ACKED_REVISION_FIELD_NUMBER: _ClassVar[int]
    LAG_REVISIONS_FIELD_NUMBER: _ClassVar[int]
    RESUMES_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    name: str
    replica: str
    connected_since: str
    acked_revision: int
    lag_revisions: int
    resumes: int
    snapshots: int
    connected: bool
    def __init__(self, name: _Optional[str] = ..., replica: _Optional[str] = ..., connected_since: _Optional[str] = ..., acked_revision: _Optional[int] = ..., lag_revisions: _Optional[int] = ..., resumes: _Optional[int] = ..., snapshots: _Optional[int] = ..., connected: _Optional[bool] = ...) -> None: ...

class ListSubscriptionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSubscriptionsResponse(_message.Message):
    __slots__ = ("subscriptions", "revision")
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    subscriptions: _containers.RepeatedCompositeFieldContainer[NodeSubscription]
    revision: int
    def __init__(self, subscriptions: _Optional[_Iterable[_Union[NodeSubscription, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class WaitForRevisionRequest(_message.Message):
    __slots__ = ("revision", "identities", "timeout_seconds")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    revision: int
    identities: _containers.RepeatedScalarFieldContainer[int]
    timeout_seconds: float
    def __init__(self, revision: _Optional[int] = ..., identities: _Optional[_Iterable[int]] = ..., timeout_seconds: _Optional[float] = ...) -> None: ...

class WaitForRevisionResponse(_message.Message):
    __slots__ = ("converged", "nodes", "pending", "covered")
    CONVERGED_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    COVERED_FIELD_NUMBER: _ClassVar[int]
    converged: bool
    nodes: _containers.RepeatedScalarFieldContainer[str]
    pending: _containers.RepeatedCompositeFieldContainer[NodeSubscription]
    covered: _containers.RepeatedCompositeFieldContainer[NodeSubscription]
    def __init__(self, converged: _Optional[bool] = ..., nodes: _Optional[_Iterable[str]] = ..., pending: _Optional[_Iterable[_Union[NodeSubscription, _Mapping]]] = ..., covered: _Optional[_Iterable[_Union[NodeSubscription, _Mapping]]] = ...) -> None: ...
