"""Human tables (like `cilium endpoint list`) and `-o json` with stable keys."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message


def output_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=["table", "json"], default=None,
                        help="output format (default: table)")


def to_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True,
                         always_print_fields_with_no_presence=True,
                         use_integers_for_enums=False)


def emit_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


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
