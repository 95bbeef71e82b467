"""``python -m nodeagent.proxy --control PATH``: run the node's L7 proxy (in the node's netns)."""

from __future__ import annotations

import argparse
from pathlib import Path

import uvloop

from nodeagent.proxy.server import Proxy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nodeagent.proxy")
    parser.add_argument("--control", required=True, type=Path,
                        help="unix socket the agent drives the proxy through")
    parser.add_argument("--orphan-timeout", type=float, default=30.0,
                        help="exit after this many seconds without an agent connected")
    args = parser.parse_args(argv)
    uvloop.run(Proxy(args.control, args.orphan_timeout).serve())


if __name__ == "__main__":
    main()
