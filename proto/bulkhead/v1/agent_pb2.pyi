from bulkhead.v1 import flow_pb2 as _flow_pb2
from bulkhead.v1 import types_pb2 as _types_pb2
from bulkhead.v1 import hostpolicy_pb2 as _hostpolicy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AddEndpointRequest(_message.Message):
    __slots__ = ("netns_path", "name", "namespace", "labels", "ports")
    NETNS_PATH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    netns_path: str
    name: str
    namespace: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    ports: _containers.RepeatedCompositeFieldContainer[_types_pb2.EndpointPort]
    def __init__(self, netns_path: _Optional[str] = ..., name: _Optional[str] = ..., namespace: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., ports: _Optional[_Iterable[_Union[_types_pb2.EndpointPort, _Mapping]]] = ...) -> None: ...

class AgentEndpoint(_message.Message):
    __slots__ = ("endpoint_id", "namespace", "name", "labels", "identity", "ipv4", "host_ifname", "netns_path", "ingress_enforced", "egress_enforced", "status", "ports")
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    IPV4_FIELD_NUMBER: _ClassVar[int]
    HOST_IFNAME_FIELD_NUMBER: _ClassVar[int]
    NETNS_PATH_FIELD_NUMBER: _ClassVar[int]
    INGRESS_ENFORCED_FIELD_NUMBER: _ClassVar[int]
    EGRESS_ENFORCED_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: int
    namespace: str
    name: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    identity: int
    ipv4: str
    host_ifname: str
    netns_path: str
    ingress_enforced: bool
    egress_enforced: bool
    status: str
    ports: _containers.RepeatedCompositeFieldContainer[_types_pb2.EndpointPort]
    def __init__(self, endpoint_id: _Optional[int] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., identity: _Optional[int] = ..., ipv4: _Optional[str] = ..., host_ifname: _Optional[str] = ..., netns_path: _Optional[str] = ..., ingress_enforced: _Optional[bool] = ..., egress_enforced: _Optional[bool] = ..., status: _Optional[str] = ..., ports: _Optional[_Iterable[_Union[_types_pb2.EndpointPort, _Mapping]]] = ...) -> None: ...

class DeleteAgentEndpointRequest(_message.Message):
    __slots__ = ("namespace", "name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class DeleteAgentEndpointResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAgentEndpointsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAgentEndpointsResponse(_message.Message):
    __slots__ = ("endpoints",)
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    endpoints: _containers.RepeatedCompositeFieldContainer[AgentEndpoint]
    def __init__(self, endpoints: _Optional[_Iterable[_Union[AgentEndpoint, _Mapping]]] = ...) -> None: ...

class DumpMapRequest(_message.Message):
    __slots__ = ("map", "endpoint")
    MAP_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    map: str
    endpoint: str
    def __init__(self, map: _Optional[str] = ..., endpoint: _Optional[str] = ...) -> None: ...

class MapRow(_message.Message):
    __slots__ = ("fields",)
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.ScalarMap[str, str]
    def __init__(self, fields: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DumpMapResponse(_message.Message):
    __slots__ = ("columns", "rows", "max_entries")
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    MAX_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedScalarFieldContainer[str]
    rows: _containers.RepeatedCompositeFieldContainer[MapRow]
    max_entries: int
    def __init__(self, columns: _Optional[_Iterable[str]] = ..., rows: _Optional[_Iterable[_Union[MapRow, _Mapping]]] = ..., max_entries: _Optional[int] = ...) -> None: ...

class AgentStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgentStatusResponse(_message.Message):
    __slots__ = ("node", "datapath", "controlplane", "connected", "applied_revision", "endpoints", "flows_seen", "flows_held", "flows_max", "map_entries", "map_max", "boot_id", "synced", "underlay_ip", "netns", "last_error", "flows_sequence", "map_writes", "proxy", "host_firewall")
    class MapEntriesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class MapMaxEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class MapWritesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_FIELD_NUMBER: _ClassVar[int]
    DATAPATH_FIELD_NUMBER: _ClassVar[int]
    CONTROLPLANE_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_REVISION_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    FLOWS_SEEN_FIELD_NUMBER: _ClassVar[int]
    FLOWS_HELD_FIELD_NUMBER: _ClassVar[int]
    FLOWS_MAX_FIELD_NUMBER: _ClassVar[int]
    MAP_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MAP_MAX_FIELD_NUMBER: _ClassVar[int]
    BOOT_ID_FIELD_NUMBER: _ClassVar[int]
    SYNCED_FIELD_NUMBER: _ClassVar[int]
    UNDERLAY_IP_FIELD_NUMBER: _ClassVar[int]
    NETNS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    FLOWS_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    MAP_WRITES_FIELD_NUMBER: _ClassVar[int]
    PROXY_FIELD_NUMBER: _ClassVar[int]
    HOST_FIREWALL_FIELD_NUMBER: _ClassVar[int]
    node: str
    datapath: str
    controlplane: str
    connected: bool
    applied_revision: int
    endpoints: int
    flows_seen: int
    flows_held: int
    flows_max: int
    map_entries: _containers.ScalarMap[str, int]
    map_max: _containers.ScalarMap[str, int]
    boot_id: str
    synced: bool
    underlay_ip: str
    netns: str
    last_error: str
    flows_sequence: int
    map_writes: _containers.ScalarMap[str, int]
    proxy: ProxyStatus
    host_firewall: _hostpolicy_pb2.HostFirewallStatus
    def __init__(self, node: _Optional[str] = ..., datapath: _Optional[str] = ..., controlplane: _Optional[str] = ..., connected: _Optional[bool] = ..., applied_revision: _Optional[int] = ..., endpoints: _Optional[int] = ..., flows_seen: _Optional[int] = ..., flows_held: _Optional[int] = ..., flows_max: _Optional[int] = ..., map_entries: _Optional[_Mapping[str, int]] = ..., map_max: _Optional[_Mapping[str, int]] = ..., boot_id: _Optional[str] = ..., synced: _Optional[bool] = ..., underlay_ip: _Optional[str] = ..., netns: _Optional[str] = ..., last_error: _Optional[str] = ..., flows_sequence: _Optional[int] = ..., map_writes: _Optional[_Mapping[str, int]] = ..., proxy: _Optional[_Union[ProxyStatus, _Mapping]] = ..., host_firewall: _Optional[_Union[_hostpolicy_pb2.HostFirewallStatus, _Mapping]] = ...) -> None: ...

class ProxyStatus(_message.Message):
    __slots__ = ("running", "pid", "listeners", "open_connections", "requests_allowed", "requests_denied", "restarts", "rule_entries", "adopted")
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    LISTENERS_FIELD_NUMBER: _ClassVar[int]
    OPEN_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_DENIED_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    RULE_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    ADOPTED_FIELD_NUMBER: _ClassVar[int]
    running: bool
    pid: int
    listeners: _containers.RepeatedScalarFieldContainer[str]
    open_connections: int
    requests_allowed: int
    requests_denied: int
    restarts: int
    rule_entries: int
    adopted: bool
    def __init__(self, running: _Optional[bool] = ..., pid: _Optional[int] = ..., listeners: _Optional[_Iterable[str]] = ..., open_connections: _Optional[int] = ..., requests_allowed: _Optional[int] = ..., requests_denied: _Optional[int] = ..., restarts: _Optional[int] = ..., rule_entries: _Optional[int] = ..., adopted: _Optional[bool] = ...) -> None: ...
