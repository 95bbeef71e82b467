"""`bulkhead`: operate a Bulkhead cluster."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from bulkhead.rpcerror import cli_message

from . import commands
from .connect import channel, credentials, server_address
from .helpformat import Parser


class Context:
    """What every command gets: its parsed arguments and lazily created stubs."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # `-o` after the command wins over `-o` before it (`bulkhead -o json status`).
        chosen = getattr(args, "output", None) or getattr(args, "global_output", None)
        self.json = chosen == "json"
        self._channel: grpc.Channel | None = None

    @property
    def address(self) -> str:
        return server_address(self.args.server)

    def stub(self, factory: Callable[[grpc.Channel], Any]) -> Any:
        if self._channel is None:
            args = self.args
            self._channel = channel(self.address, credentials(
                args.tls_ca, args.tls_cert, args.tls_key, args.insecure))
        return factory(self._channel)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bulkhead", description=__doc__)
    parser.add_argument("--server", help="control plane HOST:PORT (default: $BULKHEAD_SERVER, "
                                         "else the embedded control plane's address)")
    parser.add_argument("-o", "--output", dest="global_output", choices=["table", "json"],
                        help="output format of every command (also accepted after it)")
    for name, what in (("ca", "the cluster CA"), ("cert", "a client certificate"),
                       ("key", "its key")):
        parser.add_argument(f"--tls-{name}", type=Path,
                            help=f"{what} (PEM) for mutual TLS (default: "
                                 f"$BULKHEAD_TLS_{name.upper()}, else the admin credential in "
                                 "the embedded control plane's state dir)")
    parser.add_argument("--insecure", action="store_true",
                        help="plaintext, no client certificate: only for a control plane "
                             "started with --insecure (development); also $BULKHEAD_INSECURE=1")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in commands.ALL:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    ctx = Context(args)
    try:
        code = args.run(ctx) or 0
    except grpc.RpcError as exc:
        code = report(exc, ctx.address)
    except (ValueError, OverflowError) as exc:
        # A value no argument type checked that the request cannot carry (protobuf's
        # "Value out of range"): one line, as for any bad value, not a traceback.
        print(f"bulkhead: {str(exc)[:300]}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:  # `bulkhead ... | head`
        sys.stderr.close()
        code = 0
    finally:
        ctx.close()
    sys.exit(code)


def report(exc: grpc.RpcError, address: str) -> int:
    message, code = cli_message(exc, f"the control plane at {address}")
    print(f"bulkhead: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    main()
