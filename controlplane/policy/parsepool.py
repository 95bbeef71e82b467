"""Parses large policy files in a child process, so the event loop never waits behind them.

The replica's event loop also answers agents' heartbeats and feeds their streams: a 1 MiB
YAML file takes seconds of pure-Python parsing, and a loop blocked for longer than the node
TTL lets every node's lease expire. Small files (the common case) are parsed in place; larger
ones by `python -m controlplane.policy.parsepool` (the file on stdin, the parsed policies
pickled on stdout), killed when it runs past its deadline. A plain child process rather than
multiprocessing: nothing of the server (gRPC's threads, the main module) is inherited or
re-imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import sys
from typing import Any

from bulkhead.errors import FieldViolation

from .model import Policy
from .parse import PolicyValidationError, parse_policies

INLINE_BYTES = 16 << 10
"""Files up to this size are parsed on the loop (well under 100 ms)."""
DEFAULT_TIMEOUT = 30.0


class ParseTimeout(Exception):
    """The file took longer than its deadline to parse."""


def _outcome(text: bytes) -> tuple[str, Any]:
    try:
        return ("ok", parse_policies(text))
    except PolicyValidationError as exc:
        return ("invalid", exc.violations)


async def _in_child(text: bytes, timeout: float) -> tuple[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", __name__, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(text), timeout)
    except TimeoutError:
        raise ParseTimeout(f"parsing took longer than {timeout:g} s") from None
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    if process.returncode != 0:
        detail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return ("error", f"the parser exited with {process.returncode}: {detail[0]}")
    result: tuple[str, Any] = pickle.loads(out)
    return result


async def parse_policies_off_loop(text: str | bytes,
                                  timeout: float = DEFAULT_TIMEOUT) -> list[Policy]:
    """`parse_policies`, with large files parsed in a child process within `timeout`."""
    data = text.encode() if isinstance(text, str) else text
    if len(data) <= INLINE_BYTES:
        return parse_policies(data)
    kind, value = await _in_child(data, timeout)
    if kind == "ok":
        policies: list[Policy] = value
        return policies
    if kind == "invalid":
        raise PolicyValidationError(list(value))
    raise PolicyValidationError([FieldViolation("file", f"could not be parsed: {value}")])


if __name__ == "__main__":
    sys.stdout.buffer.write(pickle.dumps(_outcome(sys.stdin.buffer.read())))
