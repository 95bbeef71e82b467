"""`bulkhead-agent`: registers the node, subscribes, and hands what it receives to a datapath.

`--datapath=simulated` keeps the received state in memory only (scale tests, benchmarks, or to
see what a node would receive): SIGUSR1 (and exit) writes it as JSON to `--state-file`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import sys
from pathlib import Path

from bulkhead import log
from nodeagent.sink import DatapathSink, NullSink, bpf_sink
from nodeagent.subscription.client import SubscriptionClient


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bulkhead-agent", description=__doc__)
    p.add_argument("--node", required=True, help="this node's name")
    p.add_argument("--controlplane", required=True,
                   help="comma-separated control-plane HOST:PORT addresses (failover order)")
    p.add_argument("--underlay-ip", required=True, help="this node's underlay IPv4")
    p.add_argument("--datapath", choices=["simulated", "bpf"], default="bpf")
    p.add_argument("--state-file", type=Path,
                   help="simulated: write the received state here on SIGUSR1 and at exit")
    p.add_argument("--ack-interval", type=float, default=0.05,
                   help="seconds between acks (acks are coalesced)")
    return p


def write_state(client: SubscriptionClient, path: Path | None) -> None:
    if path is None:
        return
    data = client.state.dump()
    data["stats"] = vars(client.stats)
    data["synced"] = client.synced.is_set()
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)


async def run(args: argparse.Namespace, sink: DatapathSink) -> None:
    _log = log.get("nodeagent")
    addresses = [a.strip() for a in args.controlplane.split(",") if a.strip()]
    client = SubscriptionClient(args.node, addresses, underlay_ip=args.underlay_ip, sink=sink,
                                capabilities=[f"datapath:{args.datapath}"],
                                ack_interval=args.ack_interval)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, write_state, client, args.state_file)
    task = asyncio.create_task(client.run())
    _log.info("agent started", controlplane=addresses, datapath=args.datapath)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    write_state(client, args.state_file)
    _log.info("agent stopped")


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        ipaddress.IPv4Address(args.underlay_ip)
    except ValueError:
        print(f"bulkhead-agent: --underlay-ip must be an IPv4 address, got {args.underlay_ip!r}",
              file=sys.stderr)
        sys.exit(2)
    log.configure("agent", node=args.node)
    sink: DatapathSink
    if args.datapath == "simulated":
        sink = NullSink()
    else:
        try:
            sink = bpf_sink(args.node)
        except RuntimeError as exc:
            print(f"bulkhead-agent: {exc}", file=sys.stderr)
            sys.exit(2)
    asyncio.run(run(args, sink))


if __name__ == "__main__":
    main()
