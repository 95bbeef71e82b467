"""Credentials on disk: a directory only its owner may enter, files only its owner may read."""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """`path`, created if missing, mode 0700 (tightened if it was looser)."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(path, DIR_MODE)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Writes `data` to `path` with mode 0600 from the first byte on (no window in which
    another user could open it), replacing any old file at once."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.write(fd, data)
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    os.replace(tmp, path)
