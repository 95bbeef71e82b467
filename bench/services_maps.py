"""Benchmark: write 10,000 services x 10 backends into the pinned BPF service maps.

Measured: ``Datapath.sync_services`` (encode, diff against what the maps hold, batched writes
of 10,000 frontends and 100,000 backend slots) into empty maps, as an agent does when it
starts on a cluster with that many services.  Baseline in the same run: the same entries
written one ``bpf_map_update_elem`` syscall at a time.  Also reported: a re-sync of the
unchanged set (must write nothing) and ``Datapath.update_services`` of one service whose 10
backends all changed while the other 9,999 stay (the incremental path the agent takes on a
service change).  Needs root and bcc; uses a unique node pin directory and removes it.

Last line: ``service map write seconds @10000x10: <seconds>`` (target <= 1 s).
"""

from __future__ import annotations

import ctypes as ct
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nodeagent.datapath.datapath import Datapath
from nodeagent.datapath.loader import remove_pins
from nodeagent.datapath.models import Backend, ServiceFrontend

SERVICES = 10_000
BACKENDS = 10
TARGET_SECONDS = 1.0


def _ip(base: int, n: int) -> str:
    """The n-th address after the /8 ``base`` (n < 2^24)."""
    return f"{base}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def frontends(services: int, backends: int, shift: int = 0) -> list[ServiceFrontend]:
    """One TCP frontend per service (ClusterIPs from 10.96.0.0/12 as the control plane hands
    them out), each with ``backends`` distinct pod addresses; ``shift`` moves the backends."""
    out = []
    for i in range(services):
        vip = 10 << 24 | 96 << 16 | (i + 2)
        out.append(ServiceFrontend(
            f"{vip >> 24}.{vip >> 16 & 255}.{vip >> 8 & 255}.{vip & 255}", 80, 6, i + 1,
            tuple(Backend(_ip(11, (i * backends + j + shift) % (1 << 24)), 8080)
                  for j in range(backends))))
    return out


def main() -> None:
    node = f"bench{secrets.token_hex(3)}"
    dp = Datapath(node)
    try:
        wanted = frontends(SERVICES, BACKENDS)
        fe_raw, be_raw = dp.loaded.maps["lb_frontends"], dp.loaded.maps["lb_backends"]

        # Baseline: one syscall per entry (bcc-style element updates), backends first.
        from bcc.libbcc import lib  # type: ignore[import-not-found]

        fes, bes = dp.lb_maps.encode(wanted)
        t0 = time.perf_counter()
        for raw, encoded in ((be_raw, bes), (fe_raw, fes)):
            for key, value in encoded.items():
                kb = ct.create_string_buffer(key, len(key))
                vb = ct.create_string_buffer(value, len(value))
                if lib.bpf_update_elem(raw.fd, kb, vb, 0) != 0:
                    raise OSError(ct.get_errno(), f"update_elem {raw.name}")
        baseline = time.perf_counter() - t0
        fe_raw.delete(list(fes))
        be_raw.delete(list(bes))
        assert not fe_raw.dump() and not be_raw.dump()

        # Measured: the datapath's full sync, from Python objects to the kernel.
        t0 = time.perf_counter()
        writes = dp.sync_services(wanted)
        batched = time.perf_counter() - t0
        assert writes == SERVICES * (1 + BACKENDS), writes

        t0 = time.perf_counter()
        again = dp.sync_services(wanted)
        resync = time.perf_counter() - t0
        assert again == 0, again

        # One service's backends all replaced, the other services untouched.
        changed = frontends(1, BACKENDS, shift=SERVICES * BACKENDS)[0]
        t0 = time.perf_counter()
        one = dp.update_services([(changed.service_id, [changed])])
        incremental = time.perf_counter() - t0
        assert one == BACKENDS, one
        held = dp.services()
        assert len(held) == SERVICES and all(len(f.backends) == BACKENDS for f in held)
    finally:
        dp.close()
        remove_pins(node)

    entries = SERVICES * (1 + BACKENDS)
    print(f"baseline one-by-one writes @{SERVICES}x{BACKENDS} ({entries} entries): "
          f"{baseline:.3f} s")
    print(f"sync_services (encode+diff+batch) @{SERVICES}x{BACKENDS}: {batched:.3f} s "
          f"({writes} writes)")
    print(f"re-sync unchanged @{SERVICES}x{BACKENDS}: {resync:.3f} s (0 writes)")
    print(f"update_services, one service's {BACKENDS} backends replaced among {SERVICES}: "
          f"{incremental * 1000:.1f} ms ({one} writes)")
    print(f"speed-up vs baseline: {baseline / batched:.2f}x")
    verdict = "MET" if batched <= TARGET_SECONDS else "MISSED"
    print(f"target <= {TARGET_SECONDS:.0f} s: {verdict}")
    print(f"service map write seconds @{SERVICES}x{BACKENDS}: {batched:.3f}")


if __name__ == "__main__":
    main()
