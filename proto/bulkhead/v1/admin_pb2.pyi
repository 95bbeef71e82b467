from bulkhead.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EtcdStatus(_message.Message):
    __slots__ = ("healthy", "endpoints", "revision", "version", "cluster_id", "error")
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    healthy: bool
    endpoints: str
    revision: int
    version: str
    cluster_id: int
    error: str
    def __init__(self, healthy: _Optional[bool] = ..., endpoints: _Optional[str] = ..., revision: _Optional[int] = ..., version: _Optional[str] = ..., cluster_id: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("replica_id", "version", "cluster_name", "cluster_id", "etcd", "counts", "replicas", "bad_records", "embedded_etcd")
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_NAME_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    ETCD_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    BAD_RECORDS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDED_ETCD_FIELD_NUMBER: _ClassVar[int]
    replica_id: str
    version: str
    cluster_name: str
    cluster_id: int
    etcd: EtcdStatus
    counts: _containers.ScalarMap[str, int]
    replicas: _containers.RepeatedScalarFieldContainer[str]
    bad_records: _containers.RepeatedCompositeFieldContainer[BadRecord]
    embedded_etcd: EmbeddedEtcd
    def __init__(self, replica_id: _Optional[str] = ..., version: _Optional[str] = ..., cluster_name: _Optional[str] = ..., cluster_id: _Optional[int] = ..., etcd: _Optional[_Union[EtcdStatus, _Mapping]] = ..., counts: _Optional[_Mapping[str, int]] = ..., replicas: _Optional[_Iterable[str]] = ..., bad_records: _Optional[_Iterable[_Union[BadRecord, _Mapping]]] = ..., embedded_etcd: _Optional[_Union[EmbeddedEtcd, _Mapping]] = ...) -> None: ...

class BadRecord(_message.Message):
    __slots__ = ("key", "kind", "reason", "mod_revision")
    KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MOD_REVISION_FIELD_NUMBER: _ClassVar[int]
    key: str
    kind: str
    reason: str
    mod_revision: int
    def __init__(self, key: _Optional[str] = ..., kind: _Optional[str] = ..., reason: _Optional[str] = ..., mod_revision: _Optional[int] = ...) -> None: ...

class EmbeddedEtcd(_message.Message):
    __slots__ = ("running", "pid", "restarts", "last_exit", "data_dir")
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    LAST_EXIT_FIELD_NUMBER: _ClassVar[int]
    DATA_DIR_FIELD_NUMBER: _ClassVar[int]
    running: bool
    pid: int
    restarts: int
    last_exit: str
    data_dir: str
    def __init__(self, running: _Optional[bool] = ..., pid: _Optional[int] = ..., restarts: _Optional[int] = ..., last_exit: _Optional[str] = ..., data_dir: _Optional[str] = ...) -> None: ...

class ListIdentitiesRequest(_message.Message):
    __slots__ = ("label_selector", "page_size", "page_token")
    LABEL_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    label_selector: _containers.RepeatedScalarFieldContainer[str]
    page_size: int
    page_token: str
    def __init__(self, label_selector: _Optional[_Iterable[str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListIdentitiesResponse(_message.Message):
    __slots__ = ("identities", "next_page_token")
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    identities: _containers.RepeatedCompositeFieldContainer[_types_pb2.Identity]
    next_page_token: str
    def __init__(self, identities: _Optional[_Iterable[_Union[_types_pb2.Identity, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes", "next_page_token")
    NODES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_types_pb2.Node]
    next_page_token: str
    def __init__(self, nodes: _Optional[_Iterable[_Union[_types_pb2.Node, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListEndpointsRequest(_message.Message):
    __slots__ = ("node", "namespace", "identity", "page_size", "page_token")
    NODE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    node: str
    namespace: str
    identity: int
    page_size: int
    page_token: str
    def __init__(self, node: _Optional[str] = ..., namespace: _Optional[str] = ..., identity: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListEndpointsResponse(_message.Message):
    __slots__ = ("endpoints", "next_page_token")
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    endpoints: _containers.RepeatedCompositeFieldContainer[_types_pb2.Endpoint]
    next_page_token: str
    def __init__(self, endpoints: _Optional[_Iterable[_Union[_types_pb2.Endpoint, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListIPCacheRequest(_message.Message):
    __slots__ = ("node", "identity", "page_size", "page_token")
    NODE_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    node: str
    identity: int
    page_size: int
    page_token: str
    def __init__(self, node: _Optional[str] = ..., identity: _Optional[int] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListIPCacheResponse(_message.Message):
    __slots__ = ("entries", "next_page_token")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[_types_pb2.IPCacheEntry]
    next_page_token: str
    def __init__(self, entries: _Optional[_Iterable[_Union[_types_pb2.IPCacheEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
