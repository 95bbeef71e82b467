from bulkhead.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AllocateIdentityRequest(_message.Message):
    __slots__ = ("labels", "holder")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedScalarFieldContainer[str]
    holder: str
    def __init__(self, labels: _Optional[_Iterable[str]] = ..., holder: _Optional[str] = ...) -> None: ...

class ReleaseIdentityRequest(_message.Message):
    __slots__ = ("id", "holder")
    ID_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    id: int
    holder: str
    def __init__(self, id: _Optional[int] = ..., holder: _Optional[str] = ...) -> None: ...

class ReleaseIdentityResponse(_message.Message):
    __slots__ = ("remaining_references",)
    REMAINING_REFERENCES_FIELD_NUMBER: _ClassVar[int]
    remaining_references: int
    def __init__(self, remaining_references: _Optional[int] = ...) -> None: ...

class LookupIdentityRequest(_message.Message):
    __slots__ = ("labels",)
    LABELS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, labels: _Optional[_Iterable[str]] = ...) -> None: ...

class LookupIdentitiesRequest(_message.Message):
    __slots__ = ("lookups",)
    LOOKUPS_FIELD_NUMBER: _ClassVar[int]
    lookups: _containers.RepeatedCompositeFieldContainer[LookupIdentityRequest]
    def __init__(self, lookups: _Optional[_Iterable[_Union[LookupIdentityRequest, _Mapping]]] = ...) -> None: ...

class LookupIdentitiesResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[LookupIdentityResult]
    def __init__(self, results: _Optional[_Iterable[_Union[LookupIdentityResult, _Mapping]]] = ...) -> None: ...

class LookupIdentityResult(_message.Message):
    __slots__ = ("found", "identity")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    found: bool
    identity: _types_pb2.Identity
    def __init__(self, found: _Optional[bool] = ..., identity: _Optional[_Union[_types_pb2.Identity, _Mapping]] = ...) -> None: ...

class GetIdentityRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...
