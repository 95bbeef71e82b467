from bulkhead.v1 import policy_pb2 as _policy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProposedConnection(_message.Message):
    __slots__ = ("src_labels", "dst_labels", "dport", "protocol", "http_method", "http_path", "http_host", "side")
    SRC_LABELS_FIELD_NUMBER: _ClassVar[int]
    DST_LABELS_FIELD_NUMBER: _ClassVar[int]
    DPORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    HTTP_METHOD_FIELD_NUMBER: _ClassVar[int]
    HTTP_PATH_FIELD_NUMBER: _ClassVar[int]
    HTTP_HOST_FIELD_NUMBER: _ClassVar[int]
    SIDE_FIELD_NUMBER: _ClassVar[int]
    src_labels: _containers.RepeatedScalarFieldContainer[str]
    dst_labels: _containers.RepeatedScalarFieldContainer[str]
    dport: int
    protocol: str
    http_method: str
    http_path: str
    http_host: str
    side: str
    def __init__(self, src_labels: _Optional[_Iterable[str]] = ..., dst_labels: _Optional[_Iterable[str]] = ..., dport: _Optional[int] = ..., protocol: _Optional[str] = ..., http_method: _Optional[str] = ..., http_path: _Optional[str] = ..., http_host: _Optional[str] = ..., side: _Optional[str] = ...) -> None: ...

class TraceProposedRequest(_message.Message):
    __slots__ = ("yaml", "remove", "connections")
    YAML_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    yaml: str
    remove: _containers.RepeatedCompositeFieldContainer[_policy_pb2.PolicyRef]
    connections: _containers.RepeatedCompositeFieldContainer[ProposedConnection]
    def __init__(self, yaml: _Optional[str] = ..., remove: _Optional[_Iterable[_Union[_policy_pb2.PolicyRef, _Mapping]]] = ..., connections: _Optional[_Iterable[_Union[ProposedConnection, _Mapping]]] = ...) -> None: ...

class ConnectionImpact(_message.Message):
    __slots__ = ("current", "proposed", "changed")
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    current: _policy_pb2.TracePolicyResponse
    proposed: _policy_pb2.TracePolicyResponse
    changed: bool
    def __init__(self, current: _Optional[_Union[_policy_pb2.TracePolicyResponse, _Mapping]] = ..., proposed: _Optional[_Union[_policy_pb2.TracePolicyResponse, _Mapping]] = ..., changed: _Optional[bool] = ...) -> None: ...

class TraceProposedResponse(_message.Message):
    __slots__ = ("results", "policies")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ConnectionImpact]
    policies: _containers.RepeatedCompositeFieldContainer[_policy_pb2.PolicyInfo]
    def __init__(self, results: _Optional[_Iterable[_Union[ConnectionImpact, _Mapping]]] = ..., policies: _Optional[_Iterable[_Union[_policy_pb2.PolicyInfo, _Mapping]]] = ...) -> None: ...
