"""The fault suite's short bounded run in `make test` (`make chaos` runs it for longer): real
etcd members in containers, two replicas, agents on the real datapath, faults, a checked
history. A failure prints the seed that replays it (`CHAOS_SEED=... make chaos`)."""

from __future__ import annotations

import os
import random

import pytest

from integration.conftest import require_docker
from tests.chaos.run import run
from tests.datapath.conftest import require_datapath

pytestmark = pytest.mark.timeout(300)


async def test_a_bounded_fault_run_finds_no_anomalies() -> None:
    require_datapath()
    require_docker()
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1 << 31))
    lines: list[str] = []
    report = await run(float(os.environ.get("CHAOS_CI_SECONDS") or 30), seed,
                       say=lines.append)
    summary = "\n".join([f"seed {seed} (replay: CHAOS_SEED={seed} make chaos)", *lines,
                         *report.lines()])
    assert not report.anomalies, summary
    # It was a run at all: faults happened, work was done and checked.
    assert sum(report.faults.values()) >= 3, summary
    assert sum(sum(c.values()) for c in report.ops.values()) >= 50, summary
    assert report.toggles >= 2 and report.probes_checked >= 10, summary
