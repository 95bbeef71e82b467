"""The one label-matching rule of every filter (`identity list --label`, `observe
--from-label/--to-label`, the agent's `flows`): a label written with its source
(`k8s:org=empire`) matches exactly that label; one without a source (`org=empire`) matches
that key=value from any source (`k8s:org=empire`, `container:org=empire`)."""

from __future__ import annotations

from collections.abc import Iterable


def has_source(wanted: str) -> bool:
    """`k8s:org=empire` names its source; `org=empire` does not (a `:` in the value does not
    count: `app=a:b`)."""
    return ":" in wanted.split("=", 1)[0]


def matches(wanted: str, labels: Iterable[str]) -> bool:
    """Whether one of `labels` (each `source:key[=value]`) is `wanted` by the rule above."""
    if has_source(wanted):
        return wanted in labels
    return any(label.split(":", 1)[-1] == wanted for label in labels)


def matches_all(wanted: Iterable[str], labels: Iterable[str]) -> bool:
    held = list(labels)
    return all(matches(w, held) for w in wanted)
