"""`python -m tests.chaos [--seconds N] [--seed S] [--no-faults] [--soak]`; `make chaos` sets
them from CHAOS_SECONDS and CHAOS_SEED; `make soak` runs `--soak` (no faults, 30 minutes by
default, memory and lag sampled every minute). Prints the seed first (a failing run is
replayed with it), progress while it works, then the report; the last line is
`anomalies: N`, and the exit status is 1 when N > 0."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys

from bulkhead import log

from .run import run


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    p.add_argument("--seconds", type=float,
                   default=float(os.environ.get("CHAOS_SECONDS") or 300),
                   help="seconds of work under faults (default CHAOS_SECONDS or 300)")
    p.add_argument("--seed", type=int,
                   default=int(os.environ["CHAOS_SEED"]) if os.environ.get("CHAOS_SEED")
                   else random.SystemRandom().randrange(1 << 31),
                   help="replays a run's fault and work schedule (default CHAOS_SEED or random)")
    p.add_argument("--no-faults", action="store_true", help="the same work without faults")
    p.add_argument("--soak", action="store_true",
                   help="steady churn without faults for SOAK_SECONDS (default 1800), memory "
                        "and subscription lag sampled every SOAK_SAMPLE seconds (default 60)")
    args = p.parse_args()
    if args.soak:
        args.no_faults = True
        args.seconds = float(os.environ.get("SOAK_SECONDS") or 1800)
    log.configure("chaos", level="error")
    print(f"chaos: seed {args.seed} (replay with CHAOS_SEED={args.seed})", flush=True)
    report = asyncio.run(run(args.seconds, args.seed, faults=not args.no_faults,
                             nospace=not args.soak,
                             sample_every=float(os.environ.get("SOAK_SAMPLE") or 60)
                             if args.soak else 0.0,
                             say=lambda line: print(line, flush=True)))
    for line in report.lines():
        print(line, flush=True)
    return 1 if report.anomalies else 0


if __name__ == "__main__":
    sys.exit(main())
