"""Human tables (like `cilium endpoint list`) and the one JSON encoder of every `-o json`.

The JSON rule (README, "JSON output"): every number is a JSON number (64-bit revisions and
counters included: protobuf's JSON mapping would make them strings), enums are their names,
absent sub-messages are left out, and keys are written in sorted order, so two runs print the
same bytes. Every command builds its value from plain dicts, lists and `Message`s and hands it
to `emit_json` (one document) or `emit_json_line` (one object per line, for streams).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message


def output_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=["table", "json"], default=None,
                        help="output format (default: table)")


def to_dict(message: Message) -> dict[str, Any]:
    """A message as plain JSON values: proto field names, every field with no presence
    printed (zero values included), integers as numbers, map fields with sorted keys."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        if field.message_type is not None and not field.is_repeated \
                and not message.HasField(field.name):
            continue
        out[field.name] = _field_value(field, getattr(message, field.name))
    return out


def _is_map(field: Any) -> bool:
    return (field.message_type is not None
            and field.message_type.GetOptions().map_entry)


def _field_value(field: Any, value: Any) -> Any:
    if _is_map(field):
        value_field = field.message_type.fields_by_name["value"]
        return {str(k): _scalar(value_field, value[k]) for k in sorted(value)}
    if field.is_repeated:
        return [_scalar(field, v) for v in value]
    return _scalar(field, value)


def _scalar(field: Any, value: Any) -> Any:
    if field.message_type is not None:
        return to_dict(value)
    if field.enum_type is not None:
        named = field.enum_type.values_by_number.get(value)
        return named.name if named is not None else value
    if field.type == FieldDescriptor.TYPE_BYTES:
        return value.hex()
    return value


def plain(value: Any) -> Any:
    """`value` with every Message turned into its dict and every mapping's keys as text."""
    if isinstance(value, Message):
        return to_dict(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def encode(value: Any, indent: int | None = 2) -> str:
    """The JSON text of `value` by the rule above (sorted keys, numbers as numbers)."""
    return json.dumps(plain(value), indent=indent, sort_keys=True)


def emit_json(value: Any) -> None:
    sys.stdout.write(encode(value) + "\n")


def emit_json_line(value: Any) -> None:
    """One object on one line (streams such as `observe -o json`)."""
    sys.stdout.write(encode(value, indent=None) + "\n")
    sys.stdout.flush()


def count(n: int, singular: str, plural: str | None = None) -> str:
    """`1 identity`, `2 identities`, `0 nodes`."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(part) for row in cells for part in row[i].split("\n"))
              for i in range(len(headers))]
    for row in cells:
        parts = [c.split("\n") for c in row]
        height = max(len(p) for p in parts)
        for line in range(height):
            sys.stdout.write("   ".join(
                (p[line] if line < len(p) else "").ljust(widths[i])
                for i, p in enumerate(parts)).rstrip() + "\n")


def _cell(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "\n".join(str(v) for v in value) if value else "-"
    return str(value)
