"""Where a field path the API reports (`documents[1].spec.ingress[0].toPorts[0].ports[0].port`)
is in the YAML text, so the editor can point at the line."""

from __future__ import annotations

import re

import yaml

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def steps(path: str) -> list[str | int]:
    return [int(index) if index else key for key, index in _STEP.findall(path)]


def line_of(text: str, path: str) -> int | None:
    """The 1-based line of the deepest node of `path` found in `text` (None: the text does not
    parse, or not even the first step is there)."""
    try:
        documents = [d for d in yaml.compose_all(text, Loader=yaml.SafeLoader) if d is not None]
    except yaml.YAMLError:
        return None
    if not documents:
        return None
    walk = steps(path)
    node: yaml.Node = documents[0]
    if walk and walk[0] == "documents" and len(walk) > 1 and isinstance(walk[1], int):
        if walk[1] >= len(documents):
            return None
        node, walk = documents[walk[1]], walk[2:]
    found: int | None = None
    for step in walk:
        child = _child(node, step)
        if child is None:
            break
        key_line, node = child
        found = key_line
    return found if found is not None else node.start_mark.line + 1


def _child(node: yaml.Node, step: str | int) -> tuple[int, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode) and isinstance(step, str):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == step:
                return key.start_mark.line + 1, value
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
        item = node.value[step]
        return item.start_mark.line + 1, item
    return None
