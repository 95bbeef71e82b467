from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConnectClusterRequest(_message.Message):
    __slots__ = ("name", "etcd_endpoints", "etcd_cacert", "etcd_cert", "etcd_key")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ETCD_ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    ETCD_CACERT_FIELD_NUMBER: _ClassVar[int]
    ETCD_CERT_FIELD_NUMBER: _ClassVar[int]
    ETCD_KEY_FIELD_NUMBER: _ClassVar[int]
    name: str
    etcd_endpoints: _containers.RepeatedScalarFieldContainer[str]
    etcd_cacert: str
    etcd_cert: str
    etcd_key: str
    def __init__(self, name: _Optional[str] = ..., etcd_endpoints: _Optional[_Iterable[str]] = ..., etcd_cacert: _Optional[str] = ..., etcd_cert: _Optional[str] = ..., etcd_key: _Optional[str] = ...) -> None: ...

class DisconnectClusterRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DisconnectClusterResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterMeshStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RemoteCluster(_message.Message):
    __slots__ = ("name", "cluster_id", "pod_pool", "etcd_endpoints", "connected")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    POD_POOL_FIELD_NUMBER: _ClassVar[int]
    ETCD_ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    name: str
    cluster_id: int
    pod_pool: str
    etcd_endpoints: _containers.RepeatedScalarFieldContainer[str]
    connected: str
    def __init__(self, name: _Optional[str] = ..., cluster_id: _Optional[int] = ..., pod_pool: _Optional[str] = ..., etcd_endpoints: _Optional[_Iterable[str]] = ..., connected: _Optional[str] = ...) -> None: ...

class RemoteClusterStatus(_message.Message):
    __slots__ = ("cluster", "ready", "last_sync", "revision", "nodes", "endpoints", "identities", "failures", "last_error", "syncer", "nodes_synced")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    LAST_SYNC_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    SYNCER_FIELD_NUMBER: _ClassVar[int]
    NODES_SYNCED_FIELD_NUMBER: _ClassVar[int]
    cluster: RemoteCluster
    ready: bool
    last_sync: str
    revision: int
    nodes: int
    endpoints: int
    identities: int
    failures: int
    last_error: str
    syncer: str
    nodes_synced: int
    def __init__(self, cluster: _Optional[_Union[RemoteCluster, _Mapping]] = ..., ready: _Optional[bool] = ..., last_sync: _Optional[str] = ..., revision: _Optional[int] = ..., nodes: _Optional[int] = ..., endpoints: _Optional[int] = ..., identities: _Optional[int] = ..., failures: _Optional[int] = ..., last_error: _Optional[str] = ..., syncer: _Optional[str] = ..., nodes_synced: _Optional[int] = ...) -> None: ...

class ClusterMeshStatusResponse(_message.Message):
    __slots__ = ("cluster_name", "cluster_id", "remotes", "nodes", "nodes_with_all_remotes")
    CLUSTER_NAME_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    REMOTES_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    NODES_WITH_ALL_REMOTES_FIELD_NUMBER: _ClassVar[int]
    cluster_name: str
    cluster_id: int
    remotes: _containers.RepeatedCompositeFieldContainer[RemoteClusterStatus]
    nodes: int
    nodes_with_all_remotes: int
    def __init__(self, cluster_name: _Optional[str] = ..., cluster_id: _Optional[int] = ..., remotes: _Optional[_Iterable[_Union[RemoteClusterStatus, _Mapping]]] = ..., nodes: _Optional[int] = ..., nodes_with_all_remotes: _Optional[int] = ...) -> None: ...
