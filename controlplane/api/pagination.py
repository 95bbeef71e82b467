"""Key-ordered pages, bounded by count and by bytes.

The token carries the list's name and the last key of the previous page, so pages stay stable
while objects come and go, and a token that is not one this server handed out for this list
is refused rather than silently restarting the listing. A page ends before its encoded items
reach `MAX_PAGE_BYTES` (well under gRPC's 4 MiB default message limit), whatever the count
asked for; it always holds at least one item (one item is far below the limit: labels are
capped per identity).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from typing import TypeVar

from google.protobuf.message import Message

from bulkhead.errors import FieldViolation, Invalid

T = TypeVar("T")
M = TypeVar("M", bound=Message)
DEFAULT_PAGE = 500
MAX_PAGE = 5000
MAX_PAGE_BYTES = 1 << 20
_ITEM_OVERHEAD = 6   # tag and length prefix of one repeated message field, at most
_TOKEN_MAX = 1024


def encode_token(listing: str, last_key: str) -> str:
    return base64.urlsafe_b64encode(f"{listing}\n{last_key}".encode()).decode()


def decode_token(listing: str, token: str) -> str:
    """The last key a `page_token` of `listing` names; INVALID_ARGUMENT on anything else."""
    try:
        if len(token) > _TOKEN_MAX:
            raise ValueError
        raw = base64.urlsafe_b64decode(token.encode("ascii")).decode()
        if base64.urlsafe_b64encode(raw.encode()).decode() != token:
            raise ValueError
    except (ValueError, UnicodeError, binascii.Error):
        raw = ""
    name, newline, key = raw.partition("\n")
    if not newline or name != listing or not key:
        raise Invalid([FieldViolation(
            "page_token", f"not a page token of this {listing} listing; pass the "
                          "next_page_token of the previous page, or nothing to start")])
    return key


def paginate(items: Iterable[T], key: Callable[[T], str], page_size: int, page_token: str,
             *, listing: str, render: Callable[[T], M]) -> tuple[list[M], str]:
    """One page of `items` in key order, rendered; the token of the next page or ""."""
    if page_size > MAX_PAGE:
        raise Invalid([FieldViolation("page_size", f"at most {MAX_PAGE}")])
    size = page_size or DEFAULT_PAGE
    after = decode_token(listing, page_token) if page_token else None
    ordered = sorted(items, key=key)
    if after is not None:
        ordered = [item for item in ordered if key(item) > after]
    page: list[M] = []
    used = 0
    for item in ordered[:size]:
        message = render(item)
        cost = message.ByteSize() + _ITEM_OVERHEAD
        if page and used + cost > MAX_PAGE_BYTES:
            break
        page.append(message)
        used += cost
    next_token = encode_token(listing, key(ordered[len(page) - 1])) \
        if len(ordered) > len(page) else ""
    return page, next_token
