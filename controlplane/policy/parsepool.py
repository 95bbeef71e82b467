"""Policy files parsed off the event loop (controlplane/parsepool.py)."""

from __future__ import annotations

from controlplane.parsepool import DEFAULT_TIMEOUT, INLINE_BYTES, ParseTimeout, parse_off_loop
from controlplane.yamldocs import DocumentsError

from .model import Policy
from .parse import PolicyValidationError

__all__ = ["INLINE_BYTES", "ParseTimeout", "parse_policies_off_loop"]


async def parse_policies_off_loop(text: str | bytes,
                                  timeout: float = DEFAULT_TIMEOUT) -> list[Policy]:
    """`parse_policies`, with large files parsed in a child process within `timeout`."""
    try:
        policies: list[Policy] = await parse_off_loop(text, "policy", timeout)
    except PolicyValidationError:
        raise
    except DocumentsError as exc:
        raise PolicyValidationError(exc.violations) from None
    return policies
