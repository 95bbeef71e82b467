"""Parses large apply files (policies, services) in a child process, so the event loop never
waits behind them.

The replica's event loop also answers agents' heartbeats and feeds their streams: a 1 MiB
YAML file takes seconds of pure-Python parsing, and a loop blocked for longer than the node
TTL lets every node's lease expire. Small files (the common case) are parsed in place; larger
ones by `python -m controlplane.parsepool KIND` (the file on stdin, the parsed result
pickled on stdout), killed when it runs past its deadline. A plain child process rather than
multiprocessing: nothing of the server (gRPC's threads, the main module) is inherited or
re-imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import pickle
import sys
from collections.abc import Callable
from typing import Any

from bulkhead.errors import FieldViolation
from controlplane.yamldocs import DocumentsError

PARSERS = {"policy": ("controlplane.policy.parse", "parse_policies"),
           "service": ("controlplane.services.parse", "parse_services")}
"""Kind -> (module, function) of each file parser; each raises a DocumentsError."""

INLINE_BYTES = 16 << 10
"""Files up to this size are parsed on the loop (well under 100 ms)."""
DEFAULT_TIMEOUT = 30.0


class ParseTimeout(Exception):
    """The file took longer than its deadline to parse."""


def parser(kind: str) -> Callable[[bytes], Any]:
    module, name = PARSERS[kind]
    found: Callable[[bytes], Any] = getattr(importlib.import_module(module), name)
    return found


def _outcome(text: bytes, kind: str) -> tuple[str, Any]:
    try:
        return ("ok", parser(kind)(text))
    except DocumentsError as exc:
        return ("invalid", exc.violations)


async def _in_child(text: bytes, timeout: float, kind: str) -> tuple[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", __name__, kind, stdin=asyncio.subprocess.PIPE,
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


async def parse_off_loop(text: str | bytes, kind: str,
                        timeout: float = DEFAULT_TIMEOUT) -> Any:
    """The `kind` parser's result, with large files parsed in a child process within
    `timeout`; DocumentsError (the parser's own class when parsed in place) when invalid."""
    data = text.encode() if isinstance(text, str) else text
    if len(data) <= INLINE_BYTES:
        return parser(kind)(data)
    outcome, value = await _in_child(data, timeout, kind)
    if outcome == "ok":
        return value
    if outcome == "invalid":
        raise DocumentsError(list(value))
    raise DocumentsError([FieldViolation("file", f"could not be parsed: {value}")])


if __name__ == "__main__":
    sys.stdout.buffer.write(pickle.dumps(_outcome(sys.stdin.buffer.read(), sys.argv[1])))
