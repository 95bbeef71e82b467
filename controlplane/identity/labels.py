"""Labels (`source:key=value`) and the canonical label set that names an identity.

The canonical form is sorted and de-duplicated, with noise labels removed, so the same
workload always maps to the same identity. Keys follow the one label-key rule
(`bulkhead.labelkey`: Kubernetes' `prefix/name`); `;` (it separates labels in the etcd key of a
label set) and NUL are refused anywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bulkhead.errors import FieldViolation
from bulkhead.labelkey import key_problem
from bulkhead.reserved import RESERVED

MAX_LABELS = 64
MAX_LABEL_LENGTH = 640  # source (63) + ":" + key (253 + "/" + 63) + "=" + value (253), rounded up

_SOURCE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_VALUE = re.compile(r"^[A-Za-z0-9._:/-]{0,253}$")
NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
"""The label key Kubernetes gives every pod's namespace; kept by the label filter, injected
into selectors by namespaced policies."""

CLUSTER_LABEL = "io.cilium.k8s.policy.cluster"
"""The label key naming an endpoint's cluster, on every endpoint's identity (as in Cilium), so
policies select peers by cluster across a clustermesh."""


def label_key(label: str) -> str:
    """The key of `source:key=value`."""
    return label.partition(":")[2].partition("=")[0]


def with_cluster(labels: Sequence[str], cluster: str) -> list[str]:
    """An endpoint's labels with its cluster's label added (kept when given)."""
    if any(label_key(label) == CLUSTER_LABEL for label in labels):
        return list(labels)
    return [*labels, f"k8s:{CLUSTER_LABEL}={cluster}"]


@dataclass(frozen=True)
class LabelFilter:
    """Which labels are security-relevant (DESIGN §3); the rest is noise and ignored."""

    ignore_keys: tuple[str, ...] = ("pod-template-hash", "controller-revision-hash",
                                    "pod-template-generation")
    ignore_key_prefixes: tuple[str, ...] = ("io.kubernetes", "kubernetes.io", "k8s.io")
    keep_keys: tuple[str, ...] = (NAMESPACE_LABEL,)

    def relevant(self, label: str) -> bool:
        source, _, rest = label.partition(":")
        if source in ("reserved", "cidr", "fqdn"):
            return True
        key = rest.partition("=")[0]
        if key in self.keep_keys:
            return True
        if key in self.ignore_keys:
            return False
        return not any(key == p or key.startswith(p + ".") or key.startswith(p + "/")
                       for p in self.ignore_key_prefixes)


@dataclass(frozen=True)
class LabelSet:
    """A canonical, validated set of security-relevant labels."""

    labels: tuple[str, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return ";".join(self.labels)

    def reserved_id(self) -> int | None:
        """The reserved identity this set names (exactly one `reserved:` label), if any."""
        if len(self.labels) == 1 and self.labels[0].startswith("reserved:"):
            return RESERVED.get(self.labels[0].partition(":")[2])
        return None


def check_label(label: str) -> str | None:
    """Why `label` is not a valid `source:key=value` label, or None."""
    if not label:
        return "must not be empty"
    if len(label) > MAX_LABEL_LENGTH:
        return f"longer than {MAX_LABEL_LENGTH} characters"
    if "\0" in label or ";" in label:
        return "must not contain NUL or ';'"
    source, colon, rest = label.partition(":")
    if not colon or not _SOURCE.fullmatch(source):
        return "must be source:key=value with a lowercase source (e.g. k8s:app=web)"
    if source == "reserved":
        name = rest.partition("=")[0]
        return None if name in RESERVED else f"unknown reserved label {name!r}"
    if source in ("cidr", "fqdn"):  # policy-made: a prefix, an FQDN pattern (bulkhead.fqdnmatch)
        return None
    key, eq, value = rest.partition("=")
    if not eq:
        return "must be source:key=value (missing '=')"
    why = key_problem(key)
    if why:
        return why
    if not _VALUE.fullmatch(value):
        return "value must be at most 253 characters of letters, digits, '.', '_', '-', ':' or '/'"
    return None


def parse_labels(raw: Sequence[str], field_name: str = "labels",
                 label_filter: LabelFilter | None = None) -> tuple[LabelSet, list[FieldViolation]]:
    """Validates every label (all problems at once) and returns the canonical set."""
    problems: list[FieldViolation] = []
    if not raw:
        problems.append(FieldViolation(field_name, "must contain at least one label"))
    elif len(raw) > MAX_LABELS:
        problems.append(FieldViolation(field_name, f"at most {MAX_LABELS} labels, got {len(raw)}"))
        return LabelSet(), problems
    for i, label in enumerate(raw):
        why = check_label(label)
        if why:
            problems.append(FieldViolation(f"{field_name}[{i}]", why))
    if problems:
        return LabelSet(), problems
    canonical = canonicalize(raw, label_filter or LabelFilter())
    if not canonical:
        problems.append(FieldViolation(field_name, "no security-relevant label left after "
                                                   "filtering noise labels"))
    if any(lab.startswith("reserved:") for lab in canonical) and len(canonical) > 1:
        problems.append(FieldViolation(field_name, "a reserved label cannot be combined with "
                                                   "other labels"))
    return LabelSet(canonical), problems


def label_bytes(labels: Iterable[str]) -> int:
    """What a label set costs in etcd, as the identity quotas count it (UTF-8 bytes)."""
    return sum(len(label.encode()) for label in labels)


def canonicalize(labels: Iterable[str], label_filter: LabelFilter) -> tuple[str, ...]:
    return tuple(sorted({lab for lab in labels if label_filter.relevant(lab)}))
