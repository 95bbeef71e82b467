"""Reading the YAML file an `apply -f` names (`-` for stdin), for every kind that is applied."""

from __future__ import annotations

import sys
from pathlib import Path


def read_manifest(filename: str) -> str | None:
    """The file's text; None after printing why it cannot be read (the caller exits 1)."""
    try:
        return sys.stdin.read() if filename == "-" else Path(filename).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        print(f"bulkhead: cannot read {filename}: {exc}", file=sys.stderr)
        return None
