"""The policy and service YAML parsers (behind `policy apply`, `service apply` and their RPCs)
answer any input with a result or their domain validation error naming a path: never another
exception."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from controlplane.parsepool import parser
from controlplane.yamldocs import DocumentsError
from tests.fuzz.settings import fuzz_settings
from tests.fuzz.yamlstrategies import manifests

_DIRECTIVES = ["&a ", "*a", "!!python/object:os.system ", "!!binary ", "? ", "- ", ": ",
               "{", "}", "[", "]", "\t", "\0", "%YAML 1.1\n", "---\n", "...\n", "'", '"',
               "|\n", ">\n", "#", "\ufeff", "\x85", "!", "<<: *a\n", "\\", "\r"]


def dumped(docs: list[Any]) -> str:
    return yaml.safe_dump_all(docs, allow_unicode=True, sort_keys=False)


@st.composite
def texts(draw: st.DrawFn) -> str | bytes:
    """A serialized manifest, possibly with YAML syntax spliced in; raw text; raw bytes."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.text(max_size=200))
    if choice == 1:
        return draw(st.binary(max_size=200))
    text = dumped(draw(manifests()))
    if choice == 3:
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(st.sampled_from(_DIRECTIVES)) + text[at:]
    return text


def check(kind: str, text: str | bytes) -> None:
    """The property: a result, or DocumentsError whose violations each name a field."""
    try:
        parser(kind)(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    except DocumentsError as exc:
        assert exc.violations, "a validation error without a violation"
        for violation in exc.violations:
            assert violation.field, f"a violation without a path: {violation}"
            assert violation.description, f"a violation without a description: {violation}"


@fuzz_settings(60)
@given(texts())
def test_policy_parser_fuzz(text: str | bytes) -> None:
    check("policy", text)


@fuzz_settings(60)
@given(texts())
def test_service_parser_fuzz(text: str | bytes) -> None:
    check("service", text)
