"""Key-ordered pages: the token is the last key of the previous page, so pages stay stable
while objects come and go."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from bulkhead.rpcerror import FieldViolation, invalid

T = TypeVar("T")
DEFAULT_PAGE = 500
MAX_PAGE = 5000


def paginate(items: Iterable[T], key: Callable[[T], str], page_size: int,
             page_token: str) -> tuple[list[T], str]:
    if page_size > MAX_PAGE:
        raise invalid([FieldViolation("page_size", f"at most {MAX_PAGE}")])
    size = page_size or DEFAULT_PAGE
    ordered = sorted(items, key=key)
    if page_token:
        ordered = [item for item in ordered if key(item) > page_token]
    page = ordered[:size]
    next_token = key(page[-1]) if len(ordered) > size else ""
    return page, next_token
