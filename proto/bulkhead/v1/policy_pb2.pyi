from bulkhead.v1 import subscription_pb2 as _subscription_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PolicyRef(_message.Message):
    __slots__ = ("kind", "namespace", "name")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    name: str
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class PolicyInfo(_message.Message):
    __slots__ = ("kind", "namespace", "name", "revision", "created_revision", "rules", "yaml")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CREATED_REVISION_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    YAML_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    name: str
    revision: int
    created_revision: int
    rules: int
    yaml: str
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., revision: _Optional[int] = ..., created_revision: _Optional[int] = ..., rules: _Optional[int] = ..., yaml: _Optional[str] = ...) -> None: ...

class ApplyPoliciesRequest(_message.Message):
    __slots__ = ("yaml",)
    YAML_FIELD_NUMBER: _ClassVar[int]
    yaml: str
    def __init__(self, yaml: _Optional[str] = ...) -> None: ...

class AppliedPolicy(_message.Message):
    __slots__ = ("policy", "action")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    policy: PolicyInfo
    action: str
    def __init__(self, policy: _Optional[_Union[PolicyInfo, _Mapping]] = ..., action: _Optional[str] = ...) -> None: ...

class ApplyPoliciesResponse(_message.Message):
    __slots__ = ("policies", "revision", "affected_identities")
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    AFFECTED_IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[AppliedPolicy]
    revision: int
    affected_identities: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, policies: _Optional[_Iterable[_Union[AppliedPolicy, _Mapping]]] = ..., revision: _Optional[int] = ..., affected_identities: _Optional[_Iterable[int]] = ...) -> None: ...

class ListPoliciesRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class ListPoliciesResponse(_message.Message):
    __slots__ = ("policies",)
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[PolicyInfo]
    def __init__(self, policies: _Optional[_Iterable[_Union[PolicyInfo, _Mapping]]] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: PolicyRef
    def __init__(self, policy: _Optional[_Union[PolicyRef, _Mapping]] = ...) -> None: ...

class DeletePolicyRequest(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: PolicyRef
    def __init__(self, policy: _Optional[_Union[PolicyRef, _Mapping]] = ...) -> None: ...

class DeletePolicyResponse(_message.Message):
    __slots__ = ("revision", "affected_identities", "released_identities")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    AFFECTED_IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    RELEASED_IDENTITIES_FIELD_NUMBER: _ClassVar[int]
    revision: int
    affected_identities: _containers.RepeatedScalarFieldContainer[int]
    released_identities: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, revision: _Optional[int] = ..., affected_identities: _Optional[_Iterable[int]] = ..., released_identities: _Optional[_Iterable[int]] = ...) -> None: ...

class ResolvePolicyRequest(_message.Message):
    __slots__ = ("identity",)
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    identity: int
    def __init__(self, identity: _Optional[int] = ...) -> None: ...

class RuleOrigin(_message.Message):
    __slots__ = ("kind", "namespace", "name", "rule")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    namespace: str
    name: str
    rule: str
    def __init__(self, kind: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., rule: _Optional[str] = ...) -> None: ...

class ResolvedEntry(_message.Message):
    __slots__ = ("direction", "peer", "protocol", "port_lo", "port_hi", "verdict", "origins", "l7", "http", "peer_fqdn")
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    PORT_LO_FIELD_NUMBER: _ClassVar[int]
    PORT_HI_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    ORIGINS_FIELD_NUMBER: _ClassVar[int]
    L7_FIELD_NUMBER: _ClassVar[int]
    HTTP_FIELD_NUMBER: _ClassVar[int]
    PEER_FQDN_FIELD_NUMBER: _ClassVar[int]
    direction: str
    peer: int
    protocol: str
    port_lo: int
    port_hi: int
    verdict: str
    origins: _containers.RepeatedCompositeFieldContainer[RuleOrigin]
    l7: _subscription_pb2.PolicyEntry.L7
    http: _containers.RepeatedCompositeFieldContainer[_subscription_pb2.HttpRule]
    peer_fqdn: str
    def __init__(self, direction: _Optional[str] = ..., peer: _Optional[int] = ..., protocol: _Optional[str] = ..., port_lo: _Optional[int] = ..., port_hi: _Optional[int] = ..., verdict: _Optional[str] = ..., origins: _Optional[_Iterable[_Union[RuleOrigin, _Mapping]]] = ..., l7: _Optional[_Union[_subscription_pb2.PolicyEntry.L7, str]] = ..., http: _Optional[_Iterable[_Union[_subscription_pb2.HttpRule, _Mapping]]] = ..., peer_fqdn: _Optional[str] = ...) -> None: ...

class ResolvePolicyResponse(_message.Message):
    __slots__ = ("identity", "labels", "ingress_enforced", "egress_enforced", "entries", "revision", "dns_patterns")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    INGRESS_ENFORCED_FIELD_NUMBER: _ClassVar[int]
    EGRESS_ENFORCED_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    DNS_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    identity: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    ingress_enforced: bool
    egress_enforced: bool
    entries: _containers.RepeatedCompositeFieldContainer[ResolvedEntry]
    revision: int
    dns_patterns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, identity: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ..., ingress_enforced: _Optional[bool] = ..., egress_enforced: _Optional[bool] = ..., entries: _Optional[_Iterable[_Union[ResolvedEntry, _Mapping]]] = ..., revision: _Optional[int] = ..., dns_patterns: _Optional[_Iterable[str]] = ...) -> None: ...

class TracePolicyRequest(_message.Message):
    __slots__ = ("src_labels", "dst_labels", "dport", "protocol", "http_method", "http_path", "http_host", "http_headers")
    SRC_LABELS_FIELD_NUMBER: _ClassVar[int]
    DST_LABELS_FIELD_NUMBER: _ClassVar[int]
    DPORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    HTTP_METHOD_FIELD_NUMBER: _ClassVar[int]
    HTTP_PATH_FIELD_NUMBER: _ClassVar[int]
    HTTP_HOST_FIELD_NUMBER: _ClassVar[int]
    HTTP_HEADERS_FIELD_NUMBER: _ClassVar[int]
    src_labels: _containers.RepeatedScalarFieldContainer[str]
    dst_labels: _containers.RepeatedScalarFieldContainer[str]
    dport: int
    protocol: str
    http_method: str
    http_path: str
    http_host: str
    http_headers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, src_labels: _Optional[_Iterable[str]] = ..., dst_labels: _Optional[_Iterable[str]] = ..., dport: _Optional[int] = ..., protocol: _Optional[str] = ..., http_method: _Optional[str] = ..., http_path: _Optional[str] = ..., http_host: _Optional[str] = ..., http_headers: _Optional[_Iterable[str]] = ...) -> None: ...

class HttpRuleOrigin(_message.Message):
    __slots__ = ("origin", "item", "rule")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    ITEM_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    origin: RuleOrigin
    item: str
    rule: _subscription_pb2.HttpRule
    def __init__(self, origin: _Optional[_Union[RuleOrigin, _Mapping]] = ..., item: _Optional[str] = ..., rule: _Optional[_Union[_subscription_pb2.HttpRule, _Mapping]] = ...) -> None: ...

class TraceSide(_message.Message):
    __slots__ = ("verdict", "enforced", "reason", "decided_by", "enforced_by", "http_rules", "http_decided_by")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    ENFORCED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    ENFORCED_BY_FIELD_NUMBER: _ClassVar[int]
    HTTP_RULES_FIELD_NUMBER: _ClassVar[int]
    HTTP_DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    verdict: str
    enforced: bool
    reason: str
    decided_by: RuleOrigin
    enforced_by: _containers.RepeatedCompositeFieldContainer[RuleOrigin]
    http_rules: _containers.RepeatedCompositeFieldContainer[HttpRuleOrigin]
    http_decided_by: HttpRuleOrigin
    def __init__(self, verdict: _Optional[str] = ..., enforced: _Optional[bool] = ..., reason: _Optional[str] = ..., decided_by: _Optional[_Union[RuleOrigin, _Mapping]] = ..., enforced_by: _Optional[_Iterable[_Union[RuleOrigin, _Mapping]]] = ..., http_rules: _Optional[_Iterable[_Union[HttpRuleOrigin, _Mapping]]] = ..., http_decided_by: _Optional[_Union[HttpRuleOrigin, _Mapping]] = ...) -> None: ...

class TracePolicyResponse(_message.Message):
    __slots__ = ("verdict", "egress", "ingress", "src_labels", "dst_labels")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    EGRESS_FIELD_NUMBER: _ClassVar[int]
    INGRESS_FIELD_NUMBER: _ClassVar[int]
    SRC_LABELS_FIELD_NUMBER: _ClassVar[int]
    DST_LABELS_FIELD_NUMBER: _ClassVar[int]
    verdict: str
    egress: TraceSide
    ingress: TraceSide
    src_labels: _containers.RepeatedScalarFieldContainer[str]
    dst_labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, verdict: _Optional[str] = ..., egress: _Optional[_Union[TraceSide, _Mapping]] = ..., ingress: _Optional[_Union[TraceSide, _Mapping]] = ..., src_labels: _Optional[_Iterable[str]] = ..., dst_labels: _Optional[_Iterable[str]] = ...) -> None: ...
