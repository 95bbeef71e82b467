"""Regenerates proto/bulkhead/v1/*_pb2*.py (`make proto`); `--out DIR` writes elsewhere."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

PROTO_ROOT = Path(__file__).resolve().parent.parent / "proto"


def generate(out: Path) -> list[Path]:
    sources = sorted(PROTO_ROOT.glob("bulkhead/v1/*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = ["protoc", f"-I{PROTO_ROOT}", f"-I{include}", f"--python_out={tmp}",
                f"--pyi_out={tmp}", f"--grpc_python_out={tmp}"]
        rc = protoc.main([*args, *(str(s.relative_to(PROTO_ROOT)) for s in sources)])
        if rc != 0:
            raise SystemExit(f"protoc failed with exit code {rc}")
        written = []
        for f in sorted(Path(tmp, "bulkhead/v1").iterdir()):
            dest = out / "bulkhead" / "v1" / f.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
            written.append(dest)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=PROTO_ROOT)
    args = parser.parse_args()
    for path in generate(args.out):
        print(path, file=sys.stderr)


if __name__ == "__main__":
    main()
