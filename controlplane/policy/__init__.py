"""The policy engine: CiliumNetworkPolicy YAML in, per-identity policy-map entries out.

Pure: no etcd, no gRPC servicer; policies in etcd (the store and the watch-fed resolver) live
beside it in `controlplane.policystore`.

- `parse_policies(text)` validates YAML into `Policy` objects (or `PolicyValidationError`
  listing every problem with its field path);
- `PolicyRepository` resolves them per identity, incrementally, with change sets, entry-limit
  checks and CIDR identities;
- `trace(rules, src, dst, port, protocol)` explains the verdict for one connection.
"""

from controlplane.policy.cidr import CidrIdentities, InMemoryCidrIdentities
from controlplane.policy.model import (
    ANY_PEER,
    Direction,
    Entry,
    Identity,
    Policy,
    PolicyKey,
    PortRange,
    Protocol,
    ResolvedPolicy,
    Rule,
    RuleRef,
    Verdict,
)
from controlplane.policy.parse import (
    PolicyValidationError,
    canonical_json,
    parse_document,
    parse_policies,
    to_yaml,
)
from controlplane.policy.repository import (
    DEFAULT_POLICY_MAP_MAX,
    Overflow,
    PolicyMapOverflow,
    PolicyRepository,
)
from controlplane.policy.trace import HttpRuleRef, SideTrace, Trace, TraceVerdict, trace

__all__ = [
    "ANY_PEER",
    "DEFAULT_POLICY_MAP_MAX",
    "CidrIdentities",
    "Direction",
    "Entry",
    "HttpRuleRef",
    "Identity",
    "InMemoryCidrIdentities",
    "Overflow",
    "Policy",
    "PolicyKey",
    "PolicyMapOverflow",
    "PolicyRepository",
    "PolicyValidationError",
    "PortRange",
    "Protocol",
    "ResolvedPolicy",
    "Rule",
    "RuleRef",
    "SideTrace",
    "Trace",
    "TraceVerdict",
    "Verdict",
    "canonical_json",
    "parse_document",
    "parse_policies",
    "to_yaml",
    "trace",
]
