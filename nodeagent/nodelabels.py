"""The labels an agent registers its node with: `--node-labels` plus the ones Kubernetes'
kubelet sets on every node (`kubernetes.io/os`, `kubernetes.io/arch`), so host policies written
for Cilium select the same nodes. The control plane adds `kubernetes.io/hostname` and checks
every key and value (a bad one fails the registration with the label's index)."""

from __future__ import annotations

import argparse
import platform

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
         "s390x": "s390x"}


def automatic() -> dict[str, str]:
    machine = platform.machine()
    return {"kubernetes.io/os": "linux", "kubernetes.io/arch": _ARCH.get(machine, machine)}


def flag(value: str) -> dict[str, str]:
    """`--node-labels k=v,k2=v2` (kubelet's syntax) -> {k: v}; blanks dropped."""
    out: dict[str, str] = {}
    for item in (i.strip() for i in value.split(",")):
        if not item:
            continue
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"must be key=value[,key=value...], got {item!r}")
        out[key] = val
    return out


def registration_labels(given: dict[str, str]) -> list[str]:
    """What the agent registers with: the automatic labels, overridden by `--node-labels`."""
    return sorted(f"{k}={v}" for k, v in (automatic() | given).items())
