"""Parses large policy files in a child process, so the event loop never waits behind them.

The replica's event loop also answers agents' heartbeats and feeds their streams: a 1 MiB
YAML file takes seconds of pure-Python parsing, and a loop blocked for longer than the node
TTL lets every node's lease expire. Small files (the common case) are parsed in place; larger
ones in a process forked from a preloaded server (cheap to start, nothing inherited from gRPC's
threads), killed when it runs past its deadline.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from multiprocessing.connection import Connection
from typing import Any

from bulkhead.errors import FieldViolation

from .model import Policy
from .parse import PolicyValidationError, parse_policies

INLINE_BYTES = 16 << 10
"""Files up to this size are parsed on the loop (well under 100 ms)."""
DEFAULT_TIMEOUT = 30.0

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload([__name__])


class ParseTimeout(Exception):
    """The file took longer than its deadline to parse."""


def _child(conn: Connection, text: str | bytes) -> None:
    try:
        conn.send(("ok", parse_policies(text)))
    except PolicyValidationError as exc:
        conn.send(("invalid", exc.violations))
    except BaseException as exc:  # reported to the parent, which raises it there
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _run(text: str | bytes, timeout: float) -> tuple[str, Any]:
    """Blocking (on a thread): one child process, killed if it misses `timeout`."""
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    process = _CONTEXT.Process(target=_child, args=(sender, text), daemon=True,
                               name="bulkhead-policy-parse")
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            raise ParseTimeout(f"parsing took longer than {timeout:g} s")
        try:
            result: tuple[str, Any] = receiver.recv()
        except EOFError:
            return ("error", f"the parser process died (exit code {process.exitcode})")
        return result
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        process.join()


async def parse_policies_off_loop(text: str | bytes,
                                  timeout: float = DEFAULT_TIMEOUT) -> list[Policy]:
    """`parse_policies`, with large files parsed in a child process within `timeout`."""
    if len(text) <= INLINE_BYTES:
        return parse_policies(text)
    kind, value = await asyncio.to_thread(_run, text, timeout)
    if kind == "ok":
        policies: list[Policy] = value
        return policies
    if kind == "invalid":
        raise PolicyValidationError(list(value))
    raise PolicyValidationError([FieldViolation("file", f"could not be parsed: {value}")])
