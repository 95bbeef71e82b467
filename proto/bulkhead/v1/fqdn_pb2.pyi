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

class DnsFlow(_message.Message):
    __slots__ = ("query", "qtypes", "ips", "ttl", "rcode", "cnames", "observation_source")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    QTYPES_FIELD_NUMBER: _ClassVar[int]
    IPS_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    RCODE_FIELD_NUMBER: _ClassVar[int]
    CNAMES_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_SOURCE_FIELD_NUMBER: _ClassVar[int]
    query: str
    qtypes: _containers.RepeatedScalarFieldContainer[str]
    ips: _containers.RepeatedScalarFieldContainer[str]
    ttl: int
    rcode: str
    cnames: _containers.RepeatedScalarFieldContainer[str]
    observation_source: str
    def __init__(self, query: _Optional[str] = ..., qtypes: _Optional[_Iterable[str]] = ..., ips: _Optional[_Iterable[str]] = ..., ttl: _Optional[int] = ..., rcode: _Optional[str] = ..., cnames: _Optional[_Iterable[str]] = ..., observation_source: _Optional[str] = ...) -> None: ...
