from bulkhead.v1 import flow_pb2 as _flow_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ObserverStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeFlowStatus(_message.Message):
    __slots__ = ("node", "reachable", "flows_held", "flows_max", "flows_seen", "error")
    NODE_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    FLOWS_HELD_FIELD_NUMBER: _ClassVar[int]
    FLOWS_MAX_FIELD_NUMBER: _ClassVar[int]
    FLOWS_SEEN_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    node: str
    reachable: bool
    flows_held: int
    flows_max: int
    flows_seen: int
    error: str
    def __init__(self, node: _Optional[str] = ..., reachable: _Optional[bool] = ..., flows_held: _Optional[int] = ..., flows_max: _Optional[int] = ..., flows_seen: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class ObserverStatusResponse(_message.Message):
    __slots__ = ("nodes", "flows_held", "flows_max", "flows_per_second")
    NODES_FIELD_NUMBER: _ClassVar[int]
    FLOWS_HELD_FIELD_NUMBER: _ClassVar[int]
    FLOWS_MAX_FIELD_NUMBER: _ClassVar[int]
    FLOWS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeFlowStatus]
    flows_held: int
    flows_max: int
    flows_per_second: float
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeFlowStatus, _Mapping]]] = ..., flows_held: _Optional[int] = ..., flows_max: _Optional[int] = ..., flows_per_second: _Optional[float] = ...) -> None: ...
