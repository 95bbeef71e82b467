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
    __slots__ = ("name", "node_id", "underlay_ip", "pod_cidr", "tunnel", "cluster", "agent_address", "labels")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    UNDERLAY_IP_FIELD_NUMBER: _ClassVar[int]
    POD_CIDR_FIELD_NUMBER: _ClassVar[int]
    TUNNEL_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    AGENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    node_id: int
    underlay_ip: str
    pod_cidr: str
    tunnel: TunnelEndpoint
    cluster: str
    agent_address: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., node_id: _Optional[int] = ..., underlay_ip: _Optional[str] = ..., pod_cidr: _Optional[str] = ..., tunnel: _Optional[_Union[TunnelEndpoint, _Mapping]] = ..., cluster: _Optional[str] = ..., agent_address: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class Endpoint(_message.Message):
    __slots__ = ("namespace", "name", "node", "labels", "ip", "identity", "ingress_enforced", "egress_enforced", "ports")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    INGRESS_ENFORCED_FIELD_NUMBER: _ClassVar[int]
    EGRESS_ENFORCED_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    node: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    ip: str
    identity: int
    ingress_enforced: bool
    egress_enforced: bool
    ports: _containers.RepeatedCompositeFieldContainer[EndpointPort]
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., node: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., ip: _Optional[str] = ..., identity: _Optional[int] = ..., ingress_enforced: _Optional[bool] = ..., egress_enforced: _Optional[bool] = ..., ports: _Optional[_Iterable[_Union[EndpointPort, _Mapping]]] = ...) -> None: ...

class EndpointPort(_message.Message):
    __slots__ = ("name", "port", "protocol")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    name: str
    port: int
    protocol: str
    def __init__(self, name: _Optional[str] = ..., port: _Optional[int] = ..., protocol: _Optional[str] = ...) -> None: ...

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

class ServicePort(_message.Message):
    __slots__ = ("name", "port", "protocol", "target_port", "target_port_name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TARGET_PORT_FIELD_NUMBER: _ClassVar[int]
    TARGET_PORT_NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    port: int
    protocol: str
    target_port: int
    target_port_name: str
    def __init__(self, name: _Optional[str] = ..., port: _Optional[int] = ..., protocol: _Optional[str] = ..., target_port: _Optional[int] = ..., target_port_name: _Optional[str] = ...) -> None: ...

class ServiceBackend(_message.Message):
    __slots__ = ("ip", "port", "protocol", "port_name", "node", "endpoint", "cluster")
    IP_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    PORT_NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    ip: str
    port: int
    protocol: str
    port_name: str
    node: str
    endpoint: str
    cluster: str
    def __init__(self, ip: _Optional[str] = ..., port: _Optional[int] = ..., protocol: _Optional[str] = ..., port_name: _Optional[str] = ..., node: _Optional[str] = ..., endpoint: _Optional[str] = ..., cluster: _Optional[str] = ...) -> None: ...

class Service(_message.Message):
    __slots__ = ("namespace", "name", "cluster_ip", "headless", "ports", "selector", "client_ip_affinity", "id", "backends")
    class SelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_IP_FIELD_NUMBER: _ClassVar[int]
    HEADLESS_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    CLIENT_IP_AFFINITY_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    cluster_ip: str
    headless: bool
    ports: _containers.RepeatedCompositeFieldContainer[ServicePort]
    selector: _containers.ScalarMap[str, str]
    client_ip_affinity: bool
    id: int
    backends: _containers.RepeatedCompositeFieldContainer[ServiceBackend]
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., cluster_ip: _Optional[str] = ..., headless: _Optional[bool] = ..., ports: _Optional[_Iterable[_Union[ServicePort, _Mapping]]] = ..., selector: _Optional[_Mapping[str, str]] = ..., client_ip_affinity: _Optional[bool] = ..., id: _Optional[int] = ..., backends: _Optional[_Iterable[_Union[ServiceBackend, _Mapping]]] = ...) -> None: ...
