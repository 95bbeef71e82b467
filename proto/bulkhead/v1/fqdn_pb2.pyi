from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListFqdnCacheRequest(_message.Message):
    __slots__ = ("match_pattern",)
    MATCH_PATTERN_FIELD_NUMBER: _ClassVar[int]
    match_pattern: str
    def __init__(self, match_pattern: _Optional[str] = ...) -> None: ...

class FqdnCacheEntry(_message.Message):
    __slots__ = ("endpoint", "endpoint_id", "name", "ip", "identity", "ttl", "expires_at", "learnt_at")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    LEARNT_AT_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    endpoint_id: int
    name: str
    ip: str
    identity: int
    ttl: int
    expires_at: float
    learnt_at: float
    def __init__(self, endpoint: _Optional[str] = ..., endpoint_id: _Optional[int] = ..., name: _Optional[str] = ..., ip: _Optional[str] = ..., identity: _Optional[int] = ..., ttl: _Optional[int] = ..., expires_at: _Optional[float] = ..., learnt_at: _Optional[float] = ...) -> None: ...

class ListFqdnCacheResponse(_message.Message):
    __slots__ = ("node", "entries")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    node: str
    entries: _containers.RepeatedCompositeFieldContainer[FqdnCacheEntry]
    def __init__(self, node: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[FqdnCacheEntry, _Mapping]]] = ...) -> None: ...
