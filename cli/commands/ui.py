"""`bulkhead ui`: the web console (cli/console), served until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from .. import argtypes

DEFAULT_LISTEN = "127.0.0.1:12000"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "ui", help="serve the web console (map, flows, policies with what-if, cluster)",
        description="Serves the web console on HOST:PORT; it talks to the control plane as "
                    "every command does (--server, credentials).")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"address of the console (default {DEFAULT_LISTEN})")
    p.set_defaults(run=run)


def listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        argtypes.bad_value("--listen", f"expected HOST:PORT, got {text[:60]!r}")
    return host.strip("[]"), int(port)


def run(ctx: Any) -> int:
    host, port = listen_address(ctx.args.listen)
    try:
        asyncio.run(_serve(ctx, host, port))
    except OSError as exc:  # the port is taken, the address is not this machine's
        print(f"bulkhead: --listen {ctx.args.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(ctx: Any, host: str, port: int) -> None:
    # aiohttp only here: the other commands do not pay for importing it.
    from aiohttp import web

    from ..console.backend import Backend
    from ..console.server import make_app

    args = ctx.args
    runner = web.AppRunner(make_app(Backend(args.server, args.tls_ca, args.tls_cert,
                                            args.tls_key, args.insecure)), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port   # --listen HOST:0
        shown = f"[{host}]" if ":" in host else host
        print(f"bulkhead console: http://{shown}:{bound}/ (control plane {ctx.address})",
              flush=True)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
