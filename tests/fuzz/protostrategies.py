"""Hypothesis strategies for any protobuf message, built from its descriptor.

Nothing here knows a Bulkhead message: every field gets values by its type (arbitrary ones and
the boundaries: huge and empty strings, NUL bytes, negative and maximal numbers, unknown enum
values, repeated fields with duplicates, empty messages), so a field or RPC added later is
fuzzed without touching this file. A few plausible values per string field (labels, names,
addresses, YAML) are mixed in so that examples also get past the first check of a handler.
"""

from __future__ import annotations

from typing import Any

import yaml
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

from tests.fuzz.yamlstrategies import manifests

HUGE = 1 << 20
"""A huge string or bytes value: 1 MiB (several of them exceed the server's 4 MiB limit)."""
MAX_DEPTH = 6
"""Message nesting followed before a sub-message is left empty (recursive schemas)."""

_INTS = {
    FieldDescriptor.TYPE_INT32: (-(1 << 31), (1 << 31) - 1),
    FieldDescriptor.TYPE_SINT32: (-(1 << 31), (1 << 31) - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(1 << 31), (1 << 31) - 1),
    FieldDescriptor.TYPE_INT64: (-(1 << 63), (1 << 63) - 1),
    FieldDescriptor.TYPE_SINT64: (-(1 << 63), (1 << 63) - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(1 << 63), (1 << 63) - 1),
    FieldDescriptor.TYPE_UINT32: (0, (1 << 32) - 1),
    FieldDescriptor.TYPE_FIXED32: (0, (1 << 32) - 1),
    FieldDescriptor.TYPE_UINT64: (0, (1 << 64) - 1),
    FieldDescriptor.TYPE_FIXED64: (0, (1 << 64) - 1),
}

PLAUSIBLE = [
    "n1", "node-1", "default", "kube-system", "web", "a", "x" * 253, "k8s:app=web",
    "k8s:org=empire", "reserved:host", "reserved:world", "app=web", "k8s:io.kubernetes.pod"
    ".namespace=default", "10.0.0.1", "10.0.0.0/24", "10.96.0.10", "0.0.0.0", "::1",
    "192.168.1.1:8472", "80/TCP", "TCP", "UDP", "ICMP", "ANY", "ingress", "egress", "allow",
    "deny", "DROPPED", "FORWARDED", "default/rule1", "CiliumNetworkPolicy", "http", "GET", "/",
    "1", "0", "-1", "holder", "admin", "c2", "127.0.0.1:2379", "https://127.0.0.1:2379",
]
"""Values a handler accepts for some field, so examples reach past the first check."""


def _strings(depth: int) -> st.SearchStrategy[str]:
    sizes = [255, 256, 4096, 65536] + ([HUGE] if depth <= 1 else [])
    return st.one_of(
        st.text(max_size=40),
        st.sampled_from(PLAUSIBLE),
        st.sampled_from(["", "\0", "a\0b", "k8s:a\0=b", " ", "\n", "\udcff".encode(
            "utf-8", "surrogatepass").decode("utf-8", "replace"), "é" * 100, "../../etc",
            "/", "*", "%s", "${x}", "'", "\"", "\\", "\u202e", "\ufeff"]),
        st.builds(lambda n, c: c * n, st.sampled_from(sizes),
                  st.sampled_from(["a", "\0", "é"])),
        manifests().map(lambda docs: yaml.safe_dump_all(docs)),
    )


def _bytes(depth: int) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=64), st.just(b""), st.just(b"\0" * 16),
                     st.just(b"\xff" * (HUGE if depth <= 1 else 4096)))


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in (low, low + 1, -1, 0, 1, 255, 256, 65535, 65536, 16777215, 16777216,
                         high - 1, high) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


def _floats() -> st.SearchStrategy[float]:
    return st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                     st.sampled_from([0.0, -0.0, -1.0, 1e-300, 1e300, float("nan"),
                                      float("inf"), float("-inf")]))


def _enum(field: FieldDescriptor) -> st.SearchStrategy[int]:
    assert field.enum_type is not None
    known = [v.number for v in field.enum_type.values]
    # proto3 enums are open: any int32 decodes, and a server must refuse what it does not know.
    return st.one_of(st.sampled_from(known), st.sampled_from([-1, max(known) + 1, (1 << 31) - 1,
                                                              -(1 << 31)]),
                     st.integers(-(1 << 31), (1 << 31) - 1))


def scalar(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    """Values of one (non-repeated) field's type."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return _strings(depth)
    if kind == FieldDescriptor.TYPE_BYTES:
        return _bytes(depth)
    if kind in _INTS:
        return _integers(*_INTS[kind])
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return _floats()
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        return _enum(field)
    if field.message_type is not None:
        return messages(field.message_type, depth + 1)
    raise TypeError(f"no strategy for field type {kind} ({field.full_name})")


def _small(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    """Cheap values of the field's type, for long lists (never a huge string)."""
    if field.type == FieldDescriptor.TYPE_STRING:
        return st.one_of(st.sampled_from(PLAUSIBLE[:12]), st.text(max_size=8))
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=8)
    if field.message_type is not None:
        return st.just(GetMessageClass(field.message_type)())
    return scalar(field, MAX_DEPTH)


def _repeated(field: FieldDescriptor, depth: int) -> st.SearchStrategy[list[Any]]:
    element = scalar(field, depth)
    return st.one_of(
        st.lists(element, max_size=4),
        st.builds(lambda v, n: [v] * n, element, st.sampled_from([2, 3])),  # duplicates
        st.builds(lambda v, n: [v] * n, _small(field), st.sampled_from([1025, 5000])),
        st.lists(_small(field), min_size=100, max_size=300),  # many distinct items
    )


def _float_field(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_FLOAT


def _set(message: Message, field: FieldDescriptor, value: Any) -> None:
    if _float_field(field) and isinstance(value, float) and abs(value) > 3.4e38 \
            and value == value and abs(value) != float("inf"):
        value = float("inf") if value > 0 else float("-inf")  # outside float32: its limit
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        target = getattr(message, field.name)
        value_field = field.message_type.fields_by_name["value"]
        for key, item in value:
            if value_field.message_type is not None:
                target[key].CopyFrom(item)
            else:
                target[key] = item
        return
    if field.is_repeated:
        target = getattr(message, field.name)
        if field.message_type is not None:
            for item in value:
                target.add().CopyFrom(item)
        else:
            target.extend(value)
        return
    if field.message_type is not None:
        getattr(message, field.name).CopyFrom(value)
        return
    setattr(message, field.name, value)


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of `descriptor`'s type: empty, or with any subset of its fields set (at most
    one per oneof, as the wire format allows only the last)."""
    cls = GetMessageClass(descriptor)
    if depth >= MAX_DEPTH or not descriptor.fields:
        return st.just(cls())
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            key = scalar(field.message_type.fields_by_name["key"], depth)
            value = scalar(field.message_type.fields_by_name["value"], depth)
            fields[field.name] = st.lists(st.tuples(key, value), max_size=4)
        elif field.is_repeated:
            fields[field.name] = _repeated(field, depth)
        else:
            fields[field.name] = scalar(field, depth)
    by_name = {f.name: f for f in descriptor.fields}

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        chosen = draw(st.lists(st.sampled_from(sorted(fields)), unique=True,
                               max_size=len(fields)))
        oneofs_done: set[str] = set()
        for name in chosen:
            field = by_name[name]
            oneof = field.containing_oneof
            if oneof is not None:
                if oneof.name in oneofs_done:
                    continue
                oneofs_done.add(oneof.name)
            _set(message, field, draw(fields[name]))
        return message

    return st.one_of(st.just(cls()), build())
