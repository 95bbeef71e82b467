"""Loading the YAML documents of an apply safely, for every kind of manifest (policies,
services): at most 1 MiB and 256 documents, no aliases (no billion laughs), no duplicate keys,
no tags beyond the standard ones, at most 64 levels deep; a key that is not a string is kept
as a stand-in (`ComplexKey`) so validation reports it at its path with its line and column."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from bulkhead.errors import FieldViolation, shown

MAX_APPLY_BYTES = 1 << 20
"""One apply (all documents together) is at most 1 MiB, like a Kubernetes object."""
MAX_DOCUMENTS = 256
MAX_DEPTH = 64


class DocumentsError(ValueError):
    """Every problem found in the input; `violations` name the field of each."""

    def __init__(self, violations: list[FieldViolation]) -> None:
        super().__init__("; ".join(str(v) for v in violations))
        self.violations = violations


class NoAliasLoader(yaml.SafeLoader):
    """Safe loading without aliases (no billion laughs) and without silent duplicate keys."""

    noun = "manifests"

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases are not allowed in {self.noun}", event.start_mark)
        if self.check_event(yaml.MappingStartEvent, yaml.SequenceStartEvent):
            depth = getattr(self, "_bulkhead_depth", 0) + 1
            if depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nesting deeper than {MAX_DEPTH} levels",
                    self.peek_event().start_mark)
            self._bulkhead_depth = depth
            try:
                return super().compose_node(parent, index)
            finally:
                self._bulkhead_depth = depth - 1
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping, found {node.id}", node.start_mark)
        self.flatten_mapping(node)  # type: ignore[no-untyped-call]
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            else:
                key = ComplexKey(key_node)
            if key in mapping:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {shown(key)}", key_node.start_mark)
            mapping[key] = self.construct_object(value_node, deep=deep)  # type: ignore[no-untyped-call]
        return mapping


class _PolicyLoader(NoAliasLoader):
    noun = "policies"


class ComplexKey:
    """A mapping key that is itself a list or a mapping (`? [a]`). Kept as a hashable stand-in
    so validation reports it at its path, as any other key that is not a string."""

    def __init__(self, node: yaml.Node) -> None:
        self.kind = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
        self.where = f"line {node.start_mark.line + 1}, column {node.start_mark.column + 1}"

    def __repr__(self) -> str:
        return self.where


def load_documents(text: str | bytes, noun: str = "manifest") -> list[Any]:
    """The non-empty YAML documents of `text` (`noun` names what a document should be, in
    messages); raises DocumentsError on size or syntax."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > MAX_APPLY_BYTES:
        raise DocumentsError([FieldViolation(
            "file", f"{size} bytes is more than the limit of {MAX_APPLY_BYTES} bytes per apply")])
    loader = _PolicyLoader if noun == "policy" else NoAliasLoader
    docs: list[Any] = []
    seen = 0
    try:
        # Stops at the first document over the limit rather than building all of them.
        for doc in yaml.load_all(text, Loader=loader):
            seen += 1
            if doc is not None:
                docs.append(doc)
            if len(docs) > MAX_DOCUMENTS or seen > 2 * MAX_DOCUMENTS:
                raise DocumentsError([FieldViolation("file", (
                    f"more than {MAX_DOCUMENTS} documents (or {2 * MAX_DOCUMENTS} with empty "
                    f"ones); the limit is {MAX_DOCUMENTS} per apply"))])
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = exc.problem or exc.context or "malformed YAML"
        raise DocumentsError([FieldViolation("yaml", f"{where}: {problem}")]) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise DocumentsError([FieldViolation("yaml", f"malformed YAML: {exc}")]) from None
    if not docs:
        raise DocumentsError([FieldViolation("file", f"contains no {noun} document")])
    return docs


def type_name(value: Any) -> str:
    """How a validation message names a loaded value's type."""
    names: Mapping[type, str] = {dict: "a mapping", list: "a list", str: "a string",
                                 bool: "a boolean", int: "an integer", float: "a number",
                                 type(None): "null"}
    if isinstance(value, ComplexKey):
        return value.kind
    return names.get(type(value), type(value).__name__)
