"""Benchmark: write 100,000 ipcache entries into the pinned BPF LPM trie.

Measured: ``Datapath.sync_ipcache`` (encode, diff against the mirror, batched
writes) into an empty map.  Baseline in the same run: the same 100,000 entries
written one ``bpf_map_update_elem`` syscall at a time.  Also reported: a
re-sync of the unchanged set (must write nothing).  Needs root and bcc; uses a
unique pin directory and removes it.

Last line: ``ipcache write seconds @100k: <seconds>`` (target <= 1 s).
"""

from __future__ import annotations

import ctypes as ct
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nodeagent.datapath.loader import Loaded, remove_pins
from nodeagent.datapath.maps import IpcacheMap
from nodeagent.datapath.models import IpcacheEntry

N = 100_000


def entries(n: int) -> list[IpcacheEntry]:
    return [
        IpcacheEntry(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/32", 256 + i % 5000,
                     f"192.168.{i % 64}.1")
        for i in range(n)
    ]


def main() -> None:
    node = f"bench{secrets.token_hex(3)}"
    loaded = Loaded(node)
    try:
        ipcache = IpcacheMap(loaded.maps["ipcache"])
        wanted = entries(N)

        # Baseline: one syscall per entry (bcc-style element updates).
        from bcc.libbcc import lib  # type: ignore[import-not-found]

        encoded = list(ipcache.encode_all(wanted).items())
        t0 = time.perf_counter()
        for key, value in encoded:
            kb = ct.create_string_buffer(key, len(key))
            vb = ct.create_string_buffer(value, len(value))
            if lib.bpf_update_elem(loaded.maps["ipcache"].fd, kb, vb, 0) != 0:
                raise OSError(ct.get_errno(), "update_elem")
        baseline = time.perf_counter() - t0
        loaded.maps["ipcache"].delete([k for k, _ in encoded])

        # Measured: the datapath's sync path, from Python objects to the kernel.
        fresh = IpcacheMap(loaded.maps["ipcache"])
        t0 = time.perf_counter()
        writes = fresh.sync(wanted)
        batched = time.perf_counter() - t0
        assert writes == N, writes

        t0 = time.perf_counter()
        again = fresh.sync(wanted)
        resync = time.perf_counter() - t0
        assert again == 0, again
        assert len(loaded.maps["ipcache"].dump()) == N
    finally:
        loaded.close()
        remove_pins(node)

    print(f"baseline one-by-one writes @100k: {baseline:.3f} s")
    print(f"sync_ipcache (encode+diff+batch) @100k: {batched:.3f} s")
    print(f"re-sync unchanged @100k: {resync:.3f} s (0 writes)")
    print(f"speed-up vs baseline: {baseline / batched:.2f}x")
    print(f"ipcache write seconds @100k: {batched:.3f}")


if __name__ == "__main__":
    main()
