"""The fuzz suites' hypothesis settings: few examples in `make test`, many in `make fuzz`.

`FUZZ_EXAMPLES` (set by `make fuzz`, default there 2000) is the number of examples per test;
unset, each test runs a handful, so the fuzz files stay within the test budget. No deadline:
a shared 2-core machine makes per-example timings meaningless, and the properties are about
outcomes, never time.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

CI_EXAMPLES = 8
"""Examples per test in `make test`."""


def examples(default: int = CI_EXAMPLES) -> int:
    return int(os.environ.get("FUZZ_EXAMPLES", default))


def fuzz_settings(default: int = CI_EXAMPLES) -> settings:
    return settings(max_examples=examples(default), deadline=None, derandomize=False,
                    suppress_health_check=list(HealthCheck), database=None)
