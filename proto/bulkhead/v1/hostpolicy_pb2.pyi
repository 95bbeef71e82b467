from bulkhead.v1 import policy_pb2 as _policy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResolveHostRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: str
    def __init__(self, node: _Optional[str] = ...) -> None: ...

class HostPolicyEntry(_message.Message):
    __slots__ = ("direction", "peer", "peer_node", "protocol", "port_lo", "port_hi", "verdict", "origins")
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    PEER_NODE_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    PORT_LO_FIELD_NUMBER: _ClassVar[int]
    PORT_HI_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    ORIGINS_FIELD_NUMBER: _ClassVar[int]
    direction: str
    peer: int
    peer_node: str
    protocol: str
    port_lo: int
    port_hi: int
    verdict: str
    origins: _containers.RepeatedCompositeFieldContainer[_policy_pb2.RuleOrigin]
    def __init__(self, direction: _Optional[str] = ..., peer: _Optional[int] = ..., peer_node: _Optional[str] = ..., protocol: _Optional[str] = ..., port_lo: _Optional[int] = ..., port_hi: _Optional[int] = ..., verdict: _Optional[str] = ..., origins: _Optional[_Iterable[_Union[_policy_pb2.RuleOrigin, _Mapping]]] = ...) -> None: ...

class ResolveHostResponse(_message.Message):
    __slots__ = ("node", "labels", "ingress_enforced", "egress_enforced", "entries", "revision")
    NODE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    INGRESS_ENFORCED_FIELD_NUMBER: _ClassVar[int]
    EGRESS_ENFORCED_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    node: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    ingress_enforced: bool
    egress_enforced: bool
    entries: _containers.RepeatedCompositeFieldContainer[HostPolicyEntry]
    revision: int
    def __init__(self, node: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., ingress_enforced: _Optional[bool] = ..., egress_enforced: _Optional[bool] = ..., entries: _Optional[_Iterable[_Union[HostPolicyEntry, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class TraceHostRequest(_message.Message):
    __slots__ = ("src_node", "src_labels", "dst_node", "dst_labels", "dport", "protocol")
    SRC_NODE_FIELD_NUMBER: _ClassVar[int]
    SRC_LABELS_FIELD_NUMBER: _ClassVar[int]
    DST_NODE_FIELD_NUMBER: _ClassVar[int]
    DST_LABELS_FIELD_NUMBER: _ClassVar[int]
    DPORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    src_node: str
    src_labels: _containers.RepeatedScalarFieldContainer[str]
    dst_node: str
    dst_labels: _containers.RepeatedScalarFieldContainer[str]
    dport: int
    protocol: str
    def __init__(self, src_node: _Optional[str] = ..., src_labels: _Optional[_Iterable[str]] = ..., dst_node: _Optional[str] = ..., dst_labels: _Optional[_Iterable[str]] = ..., dport: _Optional[int] = ..., protocol: _Optional[str] = ...) -> None: ...

class HostFirewallStatus(_message.Message):
    __slots__ = ("attached", "ifindex", "ingress_enforced", "egress_enforced", "entries", "always_allowed", "revision", "last_error")
    ATTACHED_FIELD_NUMBER: _ClassVar[int]
    IFINDEX_FIELD_NUMBER: _ClassVar[int]
    INGRESS_ENFORCED_FIELD_NUMBER: _ClassVar[int]
    EGRESS_ENFORCED_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    ALWAYS_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    attached: bool
    ifindex: int
    ingress_enforced: bool
    egress_enforced: bool
    entries: int
    always_allowed: _containers.RepeatedScalarFieldContainer[str]
    revision: int
    last_error: str
    def __init__(self, attached: _Optional[bool] = ..., ifindex: _Optional[int] = ..., ingress_enforced: _Optional[bool] = ..., egress_enforced: _Optional[bool] = ..., entries: _Optional[int] = ..., always_allowed: _Optional[_Iterable[str]] = ..., revision: _Optional[int] = ..., last_error: _Optional[str] = ...) -> None: ...
