"""Garbage-collector settings for the long-running servers (control plane, agent).

With CPython's defaults (700, 10, 10) a replica serving 100 agents ran a full collection every
few seconds over its whole cache, pausing its event loop 20-43 ms each time: the largest share
of its loop-lag tail, and so of the change -> applied p99. Young collections every 20,000
allocations and full ones only after 1,000 of the middle generation keep short-lived garbage
cheap and take the long-lived cache out of the hot path; CPython still runs a full collection
when the objects that survived since the last one reach a quarter of the long-lived ones.
Reference counting frees acyclic garbage at once either way.
"""

from __future__ import annotations

import gc

SERVER_THRESHOLDS = (20_000, 50, 1_000)


def tune_for_server() -> None:
    """Call once at start, after imports: what exists then lives as long as the process."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVER_THRESHOLDS)
