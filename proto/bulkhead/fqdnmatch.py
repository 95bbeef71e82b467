"""DNS name patterns as Cilium defines them (`toFQDNs` and `rules.dns`: matchName, matchPattern).

Shared by the control plane (validation, the `fqdn:` labels of FQDN selector identities) and
the agent (its DNS proxy and FQDN cache), so both read a pattern the same way:

- names and patterns are case-insensitive and fully qualified: `API.World.test` and
  `api.world.test.` are the same; the canonical form is lower case with a trailing dot;
- `matchName` is one name (letters, digits, `-`, `_`, `.`);
- `matchPattern` may use `*`: within a label it stands for zero or more name characters
  (`*.world.test` matches `api.world.test`, not `a.b.world.test` nor `world.test`); a pattern
  of stars alone (`*`) matches every name; a leading `**.` stands for one or more whole labels
  (`**.world.test` matches `api.world.test` and `a.b.world.test`, not `world.test`);
- at most 255 characters.
"""

from __future__ import annotations

import re
from functools import lru_cache

MAX_LENGTH = 255
FQDN_SOURCE = "fqdn"
"""The label source of FQDN selector identities (`fqdn:*.world.test.`)."""
MATCH_ALL = "*"

_NAME_CHARS = re.compile(r"[-a-zA-Z0-9_.]+")
_PATTERN_CHARS = re.compile(r"[-a-zA-Z0-9_.*]+")
_CHAR = "[-a-z0-9_]"
_SUBDOMAINS = f"({_CHAR}+([.]{_CHAR}+)*)[.]"


def name_problem(text: str) -> str | None:
    """Why `text` is not a valid matchName, or None."""
    if not text.strip():
        return "must not be empty"
    if len(text.strip()) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    if not _NAME_CHARS.fullmatch(text.strip()):
        return "may contain only letters, digits, '-', '_' and '.'"
    if ".." in text or text.strip() == ".":
        return "must not contain an empty label ('..')"
    return None


def pattern_problem(text: str) -> str | None:
    """Why `text` is not a valid matchPattern, or None."""
    if not text.strip():
        return "must not be empty"
    if len(text.strip()) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    if not _PATTERN_CHARS.fullmatch(text.strip()):
        return "may contain only letters, digits, '-', '_', '.' and '*'"
    if ".." in text:
        return "must not contain an empty label ('..')"
    return None


def _all_stars(text: str) -> bool:
    body = text[:-1] if text.endswith(".") else text
    return bool(body) and set(body) == {"*"}


def canonical(text: str) -> str:
    """The canonical form of a valid name or pattern: lower case, trailing dot; a pattern of
    stars alone is `*`."""
    text = text.strip().lower()
    if _all_stars(text):
        return MATCH_ALL
    return text if text.endswith(".") else f"{text}."


def canonical_name(name: str) -> str:
    """A queried name as the patterns see it (lower case, trailing dot)."""
    name = name.strip().lower()
    return name if name.endswith(".") else f"{name}."


@lru_cache(maxsize=4096)
def _regex(pattern: str) -> re.Pattern[str]:
    if pattern == MATCH_ALL:
        return re.compile(f"({_CHAR}+[.])+|[.]")
    out = []
    start = 0
    stars = len(pattern) - len(pattern.lstrip("*"))
    if stars >= 2 and pattern[stars:stars + 1] == ".":
        out.append(_SUBDOMAINS)
        start = stars + 1
    i = start
    while i < len(pattern):
        c = pattern[i]
        if c == ".":
            out.append("[.]")
        elif c == "*":
            while i + 1 < len(pattern) and pattern[i + 1] == "*":
                i += 1
            out.append(f"{_CHAR}*")
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


def matches(pattern: str, name: str) -> bool:
    """`name` (any case, dot or not) matches the canonical `pattern`."""
    return _regex(pattern).fullmatch(canonical_name(name)) is not None


def label(pattern: str) -> str:
    """The label of the identity that stands for the canonical `pattern` in policy entries."""
    return f"{FQDN_SOURCE}:{pattern}"


def pattern_of(label_text: str) -> str | None:
    """The pattern an `fqdn:` label names (None: another label)."""
    source, sep, rest = label_text.partition(":")
    return rest if sep and source == FQDN_SOURCE else None
