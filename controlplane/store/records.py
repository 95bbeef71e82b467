"""The JSON shape of each kind of record the cluster cache holds, checked once as it enters.

A record that does not decode (not JSON, the wrong shape, or naming another object than its
key) is kept out of the cache, so every view fed from it (lists, subscriptions, policy
resolution, flow enrichment) sees only well-formed records and one bad key cannot stop a
replica. The cache reports what it kept out (`bulkhead status`, `bulkhead_bad_records`).
Kinds not in the table (ipam id/CIDR claims, replica and subscription status records) pass
unchecked: their readers take them as they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controlplane.policy.parse import PolicyValidationError, parse_document

REASON_MAX = 200
"""A reason quotes at most this many characters (it goes into logs and status)."""


@dataclass(frozen=True, slots=True)
class BadRecord:
    key: str
    kind: str
    reason: str
    mod_revision: int


# A field's expected type: a Python type, or STR_LIST for a list of strings.
STR_LIST = "a list of strings"
FieldType = type | str
Check = Callable[[str, dict[str, Any]], str | None]
"""(the key below the kind's prefix, the decoded object) -> why it is wrong, or None."""


def _type_ok(value: Any, expected: FieldType) -> bool:
    if expected == STR_LIST:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(expected, type) and isinstance(value, expected)


def _type_name(expected: FieldType) -> str:
    return expected if isinstance(expected, str) else {int: "an integer", str: "a string",
                                                        dict: "an object"}.get(expected,
                                                                            expected.__name__)


@dataclass(frozen=True)
class Shape:
    """A JSON object's fields; `closed`: no other field (its reader builds a dataclass)."""

    required: Mapping[str, FieldType]
    optional: Mapping[str, FieldType] = field(default_factory=dict)
    closed: bool = True
    key: Check | None = None
    fields: Mapping[str, FieldType] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", {**self.required, **self.optional})

    def check(self, rest: str, data: Any) -> str | None:
        if not isinstance(data, dict):
            return f"not a JSON object ({type(data).__name__})"
        if not self.required.keys() <= data.keys():
            return "missing " + ", ".join(n for n in self.required if n not in data)
        for name, value in data.items():
            expected = self.fields.get(name)
            if expected is None:
                if self.closed:
                    return f"unknown field {name[:40]!r}"
                continue
            if not _type_ok(value, expected):
                return f"{name} is not {_type_name(expected)}"
        return self.key(rest, data) if self.key is not None else None


def _named(name: str) -> Check:
    def check(rest: str, data: dict[str, Any]) -> str | None:
        return None if data[name] == rest else f"{name} {str(data[name])[:80]!r} is not its key's"
    return check


def _endpoint_key(rest: str, data: dict[str, Any]) -> str | None:
    if f"{data['namespace']}/{data['name']}" != rest:
        return "namespace/name is not its key's"
    return None


def _ipcache_key(rest: str, data: dict[str, Any]) -> str | None:
    return None if data["prefix"].replace("/", "_") == rest else "prefix is not its key's"


def _identity_key(rest: str, data: dict[str, Any]) -> str | None:
    return None if str(data["id"]) == rest else "id is not its key's"


def _ref_key(rest: str, data: dict[str, Any]) -> str | None:
    ident, _, holder = rest.partition("/")
    if not ident.isdecimal() or not holder:
        return "key is not refs/<id>/<holder>"
    return None


def _policy(kind: str) -> Check:
    def check(rest: str, data: dict[str, Any]) -> str | None:
        if data["kind"] != kind:
            return f"kind {str(data['kind'])[:60]!r} is not {kind}"
        meta = data["metadata"]
        name, namespace = meta.get("name"), meta.get("namespace", "")
        if not isinstance(name, str) or not isinstance(namespace, str):
            return "metadata.name/namespace are not strings"
        if (f"{namespace}/{name}" if kind == NAMESPACED else name) != rest:
            return "metadata is not its key's"
        if "spec" not in data and "specs" not in data:
            return "missing spec or specs"
        try:
            parse_document(data)   # what the resolver will do with it
        except PolicyValidationError as exc:
            return f"invalid policy: {exc}"
        return None
    return check


NAMESPACED = "CiliumNetworkPolicy"
CLUSTERWIDE = "CiliumClusterwideNetworkPolicy"
_POLICY = {"apiVersion": str, "kind": str, "metadata": dict}

# (prefix below the cluster prefix, kind, shape); the longest matching prefix applies.
TABLE: tuple[tuple[str, str, Shape], ...] = (
    ("nodes/", "node", Shape(
        {"name": str, "node_id": int, "underlay_ip": str, "pod_cidr": str, "tunnel_ip": str,
         "tunnel_port": int, "cluster": str, "lease": int}, {"agent_address": str},
        key=_named("name"))),
    ("ipam/nodes/", "node_allocation", Shape({"node_id": int, "pod_cidr": str})),
    ("endpoints/", "endpoint", Shape(
        {"namespace": str, "name": str, "node": str, "labels": STR_LIST, "ip": str,
         "identity": int}, key=_endpoint_key)),
    ("ipcache/", "ipcache", Shape(
        {"prefix": str, "identity": int, "node": str, "tunnel_ip": str, "tunnel_port": int,
         "cluster": str}, key=_ipcache_key)),
    ("identities/id/", "identity", Shape({"id": int, "labels": STR_LIST}, closed=False,
                                         key=_identity_key)),
    ("identities/labels/", "identity_labels", Shape({"id": int}, closed=False)),
    ("identities/refs/", "identity_ref", Shape({}, {"count": int}, closed=False,
                                               key=_ref_key)),
    ("policies/namespaced/", "policy", Shape(_POLICY, {"spec": object, "specs": object},
                                             closed=False, key=_policy(NAMESPACED))),
    ("policies/clusterwide/", "policy", Shape(_POLICY, {"spec": object, "specs": object},
                                              closed=False, key=_policy(CLUSTERWIDE))),
)


class Records:
    """The table bound to one cluster's key prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._table = sorted(((prefix + p, kind, shape) for p, kind, shape in TABLE),
                             key=lambda row: -len(row[0]))

    def kind(self, key: str) -> str | None:
        """The record kind `key` holds, None when the table does not check it."""
        for prefix, kind, _shape in self._table:
            if key.startswith(prefix):
                return kind
        return None

    def unreadable(self, key: str, value: bytes) -> str | None:
        """Why a record read straight from etcd cannot be used, naming its key; None if it
        can. For the API paths that read etcd rather than the cache."""
        found = self.problem(key, value)
        return None if found is None else f"stored record {key} is unreadable: {found[1]}"

    def problem(self, key: str, value: bytes) -> tuple[str, str] | None:
        """(kind, why) when the value does not decode as its key's kind; None when it does
        (or when the kind is not checked)."""
        for prefix, kind, shape in self._table:
            if key.startswith(prefix):
                try:
                    data = json.loads(value)
                except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is one
                    return kind, f"not JSON: {str(exc)[:REASON_MAX]}"
                try:
                    reason = shape.check(key[len(prefix):], data)
                except Exception as exc:   # a check's own failure must not stop the watch
                    reason = f"undecodable: {type(exc).__name__}: {exc}"
                return (kind, reason[:REASON_MAX]) if reason is not None else None
        return None
