"""Fetches every page of a List* call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def all_pages(call: Callable[..., Any], request: Any, field: str) -> list[Any]:
    items: list[Any] = []
    while True:
        response = call(request, timeout=30)
        items.extend(getattr(response, field))
        if not response.next_page_token:
            return items
        request.page_token = response.next_page_token
