"""Counted sets: a key stays while something still contributes it. The engine and the
resolver keep several (requirements per bucket, named ports, L7 contributions); one function
updates them all the same way."""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")


def adjust(counts: dict[K, int], key: K, delta: int) -> int:
    """Adds `delta` to `key`'s count; a count that reaches 0 drops the key. The new count."""
    n = counts.get(key, 0) + delta
    if n:
        counts[key] = n
    else:
        del counts[key]
    return n
