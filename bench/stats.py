"""What every benchmark measures the same way: percentiles and a process's CPU time."""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Sequence
from pathlib import Path


def pct(samples: Sequence[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) by nearest rank: the smallest sample that at least a
    fraction q of the samples is <= to, in the samples' own unit; NaN without samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = math.ceil(round(q * len(ordered), 9))   # round: 0.29 * 100 is 28.999999999999996
    return ordered[min(len(ordered), max(1, rank)) - 1]


def cpu_seconds(pid: int | None = None) -> float:
    """User+system CPU seconds of a process (this one when pid is None)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
