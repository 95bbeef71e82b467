from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HoldTestLockRequest(_message.Message):
    __slots__ = ("holder",)
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    holder: str
    def __init__(self, holder: _Optional[str] = ...) -> None: ...

class TestLock(_message.Message):
    __slots__ = ("holder", "since_ns", "replica", "ttl_seconds")
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    SINCE_NS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    holder: str
    since_ns: int
    replica: str
    ttl_seconds: int
    def __init__(self, holder: _Optional[str] = ..., since_ns: _Optional[int] = ..., replica: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class CreateTestPodRequest(_message.Message):
    __slots__ = ("node", "name", "labels", "serve_ports")
    NODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SERVE_PORTS_FIELD_NUMBER: _ClassVar[int]
    node: str
    name: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    serve_ports: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, node: _Optional[str] = ..., name: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., serve_ports: _Optional[_Iterable[int]] = ...) -> None: ...

class TestPod(_message.Message):
    __slots__ = ("node", "namespace", "name", "ipv4", "identity", "labels", "node_ip")
    NODE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IPV4_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    NODE_IP_FIELD_NUMBER: _ClassVar[int]
    node: str
    namespace: str
    name: str
    ipv4: str
    identity: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    node_ip: str
    def __init__(self, node: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., ipv4: _Optional[str] = ..., identity: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ..., node_ip: _Optional[str] = ...) -> None: ...

class ProbeRequest(_message.Message):
    __slots__ = ("node", "from_pod", "kind", "ip", "port", "method", "path", "timeout_seconds")
    NODE_FIELD_NUMBER: _ClassVar[int]
    FROM_POD_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    node: str
    from_pod: str
    kind: str
    ip: str
    port: int
    method: str
    path: str
    timeout_seconds: float
    def __init__(self, node: _Optional[str] = ..., from_pod: _Optional[str] = ..., kind: _Optional[str] = ..., ip: _Optional[str] = ..., port: _Optional[int] = ..., method: _Optional[str] = ..., path: _Optional[str] = ..., timeout_seconds: _Optional[float] = ...) -> None: ...

class ProbeResult(_message.Message):
    __slots__ = ("ok", "detail", "http_code", "source_ip", "started_ns")
    OK_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    HTTP_CODE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_IP_FIELD_NUMBER: _ClassVar[int]
    STARTED_NS_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    detail: str
    http_code: int
    source_ip: str
    started_ns: int
    def __init__(self, ok: _Optional[bool] = ..., detail: _Optional[str] = ..., http_code: _Optional[int] = ..., source_ip: _Optional[str] = ..., started_ns: _Optional[int] = ...) -> None: ...

class CleanupTestPodsRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: str
    def __init__(self, node: _Optional[str] = ...) -> None: ...

class NodeCleanup(_message.Message):
    __slots__ = ("node", "removed", "error")
    NODE_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    node: str
    removed: _containers.RepeatedScalarFieldContainer[str]
    error: str
    def __init__(self, node: _Optional[str] = ..., removed: _Optional[_Iterable[str]] = ..., error: _Optional[str] = ...) -> None: ...

class CleanupTestPodsResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeCleanup]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeCleanup, _Mapping]]] = ...) -> None: ...
