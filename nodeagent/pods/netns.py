"""Named network namespaces, with iproute2 (the commands an operator would type), and the
processes found inside one (so removing a namespace first stops what still runs in it)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

NETNS_DIR = Path("/var/run/netns")


class NetError(RuntimeError):
    pass


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise NetError(f"{' '.join(cmd)}: {result.stderr.strip()}")
    return result.stdout


def namespaces(prefix: str) -> list[str]:
    out = ip("netns", "list", check=False)
    return [line.split()[0] for line in out.splitlines()
            if line.strip() and line.split()[0].startswith(prefix)]


def path(name: str) -> str:
    return str(NETNS_DIR / name)


def add_netns(name: str) -> None:
    if name not in namespaces(name):
        ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)


def delete_netns(name: str) -> None:
    with contextlib.suppress(NetError):
        ip("netns", "delete", name)


def pids_in(name: str) -> list[int]:
    """Processes whose network namespace is the named one (compared by inode)."""
    try:
        target = os.stat(path(name))
    except FileNotFoundError:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            st = os.stat(entry / "ns" / "net")
            if (st.st_ino, st.st_dev) == (target.st_ino, target.st_dev):
                found.append(int(entry.name))
    return found
