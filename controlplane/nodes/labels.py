"""Node labels: what host policies (`nodeSelector`, `fromNodes`/`toNodes`) select nodes by.

A node's labels come from two places, as in Kubernetes: the agent gives some when it registers
(`--node-labels`, plus `kubernetes.io/os` and `kubernetes.io/arch`), the control plane adds
`kubernetes.io/hostname=<name>`, and operators change them with `bulkhead node label`. The
operator's changes are kept apart (unleased, `node-labels/<name>`) and applied over the agent's
at every registration, so a restarted agent neither loses them nor brings back a removed label.
Labels are `key=value` strings (Kubernetes keys and values), sorted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from bulkhead.errors import FieldViolation, shown
from bulkhead.labelkey import key_problem

HOSTNAME_LABEL = "kubernetes.io/hostname"
"""Set by the control plane to the node's name on every registration (Kubernetes' own)."""
MAX_NODE_LABELS = 64
_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
VALUE_RULE = ("at most 63 letters, digits, '-', '_' or '.', beginning and ending with a letter "
              "or digit")


def value_problem(value: str) -> str | None:
    if len(value) > 63 or not _VALUE.fullmatch(value):
        return f"value {shown(value)} is not a label value ({VALUE_RULE})"
    return None


def check_key(key: str, field_name: str) -> list[FieldViolation]:
    if (problem := key_problem(key)) is not None:
        return [FieldViolation(field_name, f"{shown(key)}: {problem}")]
    if key == HOSTNAME_LABEL:
        return [FieldViolation(field_name, f"{HOSTNAME_LABEL} is the node's name; it cannot "
                                           "be set or removed")]
    return []


def parse_labels(items: Iterable[str], field_name: str
                 ) -> tuple[dict[str, str], list[FieldViolation]]:
    """`key=value` strings -> {key: value}, with a violation per bad item (`labels[2]`)."""
    out: dict[str, str] = {}
    problems: list[FieldViolation] = []
    for i, item in enumerate(items):
        path = f"{field_name}[{i}]"
        key, sep, value = item.partition("=")
        if not sep:
            problems.append(FieldViolation(path, f"must be key=value, got {shown(item)}"))
            continue
        found = check_key(key, path)
        if not found and (problem := value_problem(value)) is not None:
            found = [FieldViolation(path, problem)]
        if not found and key in out and out[key] != value:
            found = [FieldViolation(path, f"key {key} is given twice with different values")]
        problems += found
        if not found:
            out[key] = value
    if len(out) > MAX_NODE_LABELS:
        problems.append(FieldViolation(field_name, f"has {len(out)} labels, more than the "
                                                   f"limit of {MAX_NODE_LABELS}"))
    return out, problems


def as_strings(labels: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(sorted(f"{k}={v}" for k, v in labels.items()))


def as_dict(labels: Iterable[str]) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in labels)


def effective(name: str, agent: Mapping[str, str], added: Mapping[str, str],
              removed: Iterable[str]) -> tuple[str, ...]:
    """The node's labels: the agent's, then the operator's removals and additions, then the
    hostname label (always the node's name)."""
    labels = {k: v for k, v in agent.items() if k not in set(removed)}
    labels.update(added)
    labels[HOSTNAME_LABEL] = name
    return as_strings(labels)
