from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Identity(_message.Message):
    __slots__ = ("id", "labels", "references")
    ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    id: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    references: int
    def __init__(self, id: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ..., references: _Optional[int] = ...) -> None: ...

class TunnelEndpoint(_message.Message):
    __slots__ = ("ip", "port")
    IP_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    ip: str
    port: int
    def __init__(self, ip: _Optional[str] = ..., port: _Optional[int] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "node_id", "underlay_ip", "pod_cidr", "tunnel", "cluster", "agent_address")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    UNDERLAY_IP_FIELD_NUMBER: _ClassVar[int]
    POD_CIDR_FIELD_NUMBER: _ClassVar[int]
    TUNNEL_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    AGENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    name: str
    node_id: int
    underlay_ip: str
    pod_cidr: str
    tunnel: TunnelEndpoint
    cluster: str
    agent_address: str
    def __init__(self, name: _Optional[str] = ..., node_id: _Optional[int] = ..., underlay_ip: _Optional[str] = ..., pod_cidr: _Optional[str] = ..., tunnel: _Optional[_Union[TunnelEndpoint, _Mapping]] = ..., cluster: _Optional[str] = ..., agent_address: _Optional[str] = ...) -> None: ...

class Endpoint(_message.Message):
    __slots__ = ("namespace", "name", "node", "labels", "ip", "identity", "ingress_enforced", "egress_enforced")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    INGRESS_ENFORCED_FIELD_NUMBER: _ClassVar[int]
    EGRESS_ENFORCED_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    node: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    ip: str
    identity: int
    ingress_enforced: bool
    egress_enforced: bool
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., node: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., ip: _Optional[str] = ..., identity: _Optional[int] = ..., ingress_enforced: _Optional[bool] = ..., egress_enforced: _Optional[bool] = ...) -> None: ...

class IPCacheEntry(_message.Message):
    __slots__ = ("prefix", "identity", "node", "tunnel", "cluster")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    TUNNEL_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    identity: int
    node: str
    tunnel: TunnelEndpoint
    cluster: str
    def __init__(self, prefix: _Optional[str] = ..., identity: _Optional[int] = ..., node: _Optional[str] = ..., tunnel: _Optional[_Union[TunnelEndpoint, _Mapping]] = ..., cluster: _Optional[str] = ...) -> None: ...
