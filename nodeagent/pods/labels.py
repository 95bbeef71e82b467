"""A pod's labels as its endpoint carries them."""

from __future__ import annotations

from collections.abc import Sequence

NAMESPACE_LABEL = "k8s:io.kubernetes.pod.namespace"


def pod_labels(labels: Sequence[str], namespace: str) -> list[str]:
    """`k=v` become `k8s:k=v`; labels with a source stay; the namespace label is added."""
    out = []
    for label in labels:
        key = label.split("=", 1)[0]
        out.append(label if ":" in key else f"k8s:{label}")
    out.append(f"{NAMESPACE_LABEL}={namespace}")
    return out
