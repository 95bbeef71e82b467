from bulkhead.v1 import fqdn_pb2 as _fqdn_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FlowPeer(_message.Message):
    __slots__ = ("namespace", "pod", "ip", "port", "identity", "labels", "node_name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    pod: str
    ip: str
    port: int
    identity: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    node_name: str
    def __init__(self, namespace: _Optional[str] = ..., pod: _Optional[str] = ..., ip: _Optional[str] = ..., port: _Optional[int] = ..., identity: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ..., node_name: _Optional[str] = ...) -> None: ...

class FlowService(_message.Message):
    __slots__ = ("namespace", "name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class Flow(_message.Message):
    __slots__ = ("time_ns", "node", "verdict", "drop_reason", "source", "destination", "protocol", "tcp_flags", "direction", "endpoint_id", "sequence", "boot_id", "destination_service", "policy_match", "mesh_sync_grace", "type", "l7")
    TIME_NS_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    DROP_REASON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TCP_FLAGS_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_SERVICE_FIELD_NUMBER: _ClassVar[int]
    POLICY_MATCH_FIELD_NUMBER: _ClassVar[int]
    MESH_SYNC_GRACE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    L7_FIELD_NUMBER: _ClassVar[int]
    time_ns: int
    node: str
    verdict: str
    drop_reason: str
    source: FlowPeer
    destination: FlowPeer
    protocol: str
    tcp_flags: _containers.RepeatedScalarFieldContainer[str]
    direction: str
    endpoint_id: int
    sequence: int
    boot_id: str
    destination_service: FlowService
    policy_match: bool
    mesh_sync_grace: bool
    type: str
    l7: L7Flow
    def __init__(self, time_ns: _Optional[int] = ..., node: _Optional[str] = ..., verdict: _Optional[str] = ..., drop_reason: _Optional[str] = ..., source: _Optional[_Union[FlowPeer, _Mapping]] = ..., destination: _Optional[_Union[FlowPeer, _Mapping]] = ..., protocol: _Optional[str] = ..., tcp_flags: _Optional[_Iterable[str]] = ..., direction: _Optional[str] = ..., endpoint_id: _Optional[int] = ..., sequence: _Optional[int] = ..., boot_id: _Optional[str] = ..., destination_service: _Optional[_Union[FlowService, _Mapping]] = ..., policy_match: _Optional[bool] = ..., mesh_sync_grace: _Optional[bool] = ..., type: _Optional[str] = ..., l7: _Optional[_Union[L7Flow, _Mapping]] = ...) -> None: ...

class L7Flow(_message.Message):
    __slots__ = ("type", "latency_ns", "http", "dns")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    HTTP_FIELD_NUMBER: _ClassVar[int]
    DNS_FIELD_NUMBER: _ClassVar[int]
    type: str
    latency_ns: int
    http: HttpFlow
    dns: _fqdn_pb2.DnsFlow
    def __init__(self, type: _Optional[str] = ..., latency_ns: _Optional[int] = ..., http: _Optional[_Union[HttpFlow, _Mapping]] = ..., dns: _Optional[_Union[_fqdn_pb2.DnsFlow, _Mapping]] = ...) -> None: ...

class HttpFlow(_message.Message):
    __slots__ = ("code", "method", "url", "protocol", "headers")
    CODE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    code: int
    method: str
    url: str
    protocol: str
    headers: _containers.RepeatedCompositeFieldContainer[HttpHeader]
    def __init__(self, code: _Optional[int] = ..., method: _Optional[str] = ..., url: _Optional[str] = ..., protocol: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[HttpHeader, _Mapping]]] = ...) -> None: ...

class HttpHeader(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class FlowFilter(_message.Message):
    __slots__ = ("from_labels", "to_labels", "from_pod", "to_pod", "from_ip", "to_ip", "from_identity", "to_identity", "verdict", "port", "protocol", "node", "since_ns", "to_service", "type", "http_method", "http_path", "http_status")
    FROM_LABELS_FIELD_NUMBER: _ClassVar[int]
    TO_LABELS_FIELD_NUMBER: _ClassVar[int]
    FROM_POD_FIELD_NUMBER: _ClassVar[int]
    TO_POD_FIELD_NUMBER: _ClassVar[int]
    FROM_IP_FIELD_NUMBER: _ClassVar[int]
    TO_IP_FIELD_NUMBER: _ClassVar[int]
    FROM_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    TO_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    SINCE_NS_FIELD_NUMBER: _ClassVar[int]
    TO_SERVICE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    HTTP_METHOD_FIELD_NUMBER: _ClassVar[int]
    HTTP_PATH_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    from_labels: _containers.RepeatedScalarFieldContainer[str]
    to_labels: _containers.RepeatedScalarFieldContainer[str]
    from_pod: str
    to_pod: str
    from_ip: str
    to_ip: str
    from_identity: int
    to_identity: int
    verdict: str
    port: int
    protocol: str
    node: str
    since_ns: int
    to_service: str
    type: str
    http_method: str
    http_path: str
    http_status: str
    def __init__(self, from_labels: _Optional[_Iterable[str]] = ..., to_labels: _Optional[_Iterable[str]] = ..., from_pod: _Optional[str] = ..., to_pod: _Optional[str] = ..., from_ip: _Optional[str] = ..., to_ip: _Optional[str] = ..., from_identity: _Optional[int] = ..., to_identity: _Optional[int] = ..., verdict: _Optional[str] = ..., port: _Optional[int] = ..., protocol: _Optional[str] = ..., node: _Optional[str] = ..., since_ns: _Optional[int] = ..., to_service: _Optional[str] = ..., type: _Optional[str] = ..., http_method: _Optional[str] = ..., http_path: _Optional[str] = ..., http_status: _Optional[str] = ...) -> None: ...

class GetFlowsRequest(_message.Message):
    __slots__ = ("last", "follow", "filter", "after_sequence")
    LAST_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    last: int
    follow: bool
    filter: FlowFilter
    after_sequence: int
    def __init__(self, last: _Optional[int] = ..., follow: _Optional[bool] = ..., filter: _Optional[_Union[FlowFilter, _Mapping]] = ..., after_sequence: _Optional[int] = ...) -> None: ...
