"""The committed generated code must match the .proto files (`make proto` regenerates)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts/genproto.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    generated = sorted((tmp_path / "bulkhead/v1").iterdir())
    assert generated, "nothing generated"
    stale = [f.name for f in generated
             if not (ROOT / "proto/bulkhead/v1" / f.name).exists()
             or (ROOT / "proto/bulkhead/v1" / f.name).read_bytes() != f.read_bytes()]
    assert stale == [], f"run `make proto`: stale {stale}"
    committed = {p.name for p in (ROOT / "proto/bulkhead/v1").glob("*_pb2*")}
    orphans = committed - {f.name for f in generated}
    assert orphans == set(), f"generated files without a .proto: {orphans}"
