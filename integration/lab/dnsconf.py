"""A pod's resolv.conf with the Kubernetes search path, pointing at its node agent's DNS.

`ip netns exec NAME` bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf, so a file
written there when the pod is created is what every command run in the pod resolves with.
Only files carrying MARK (written here) are ever removed.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from nodeagent.dns.listen import DEFAULT_LISTEN

ETC_NETNS = Path("/etc/netns")
MARK = "# written by bulkhead for a pod"
NAMESERVER = DEFAULT_LISTEN.partition(":")[0]


def text(namespace: str, nameserver: str = NAMESERVER) -> str:
    """What kubelet writes for a ClusterFirst pod (cluster domain cluster.local)."""
    return (f"{MARK}\nsearch {namespace}.svc.cluster.local svc.cluster.local cluster.local\n"
            f"nameserver {nameserver}\noptions ndots:5\n")


def write(netns: str, namespace: str, root: Path = ETC_NETNS) -> Path:
    """Gives the pod in network namespace ``netns`` its resolv.conf."""
    path = root / netns / "resolv.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("resolv.conf.tmp")
    tmp.write_text(text(namespace))
    tmp.replace(path)
    return path


def remove(netns: str, root: Path = ETC_NETNS) -> None:
    """Removes what `write` made (nothing else: a file without MARK stays)."""
    folder = root / netns
    path = folder / "resolv.conf"
    with contextlib.suppress(FileNotFoundError):
        if path.read_text().startswith(MARK):
            path.unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()   # only when empty


def remove_prefix(prefix: str, root: Path = ETC_NETNS) -> None:
    """Removes the resolv.conf of every namespace named ``prefix*`` (lab down)."""
    if root.is_dir():
        for folder in root.glob(f"{prefix}*"):
            remove(folder.name, root)
