"""Compile the tc programs with bcc and open (or adopt) the pinned maps.

bcc creates each BPF_TABLE_PINNED map and pins it when the pin is missing, and
reuses the pinned map when it exists, so a restarted agent shares every map
(endpoints, ipcache, policy, conntrack, counters, config, services) with the programs
that are still attached: enforcement never stops.  Pins live under
``<pin_root>/<node>/v<LAYOUT_VERSION>/`` because pinned maps carry no schema.
The flow ring buffer is not pinned: each loader gets its own, and attaching its
programs (tc replace) moves the flow events to it.
"""

from __future__ import annotations

import ctypes
import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from nodeagent.datapath.layout import LAYOUT_VERSION, SIZES
from nodeagent.datapath.rawmap import RawMap

DEFAULT_PIN_ROOT = Path("/sys/fs/bpf/bulkhead")
PROGRAMS = ("from_pod", "from_overlay", "to_pod", "to_overlay", "host_in", "host_out")
MIRRORED = frozenset({"endpoints", "ipcache", "policy", "config", "lb_frontends",
                      "lb_backends", "mesh_grace"})
"""Maps only user space writes; the programs write conntrack and counters."""


class DatapathUnavailable(RuntimeError):
    """BPF cannot be used here; the message says what is missing."""


def bpf_sources() -> Path:
    """The C programs (datapath.c) and their header (bulkhead.h), shipped as package data of
    nodeagent.datapath so that any install can compile them; bcc reads them as files."""
    sources = resources.files("nodeagent.datapath") / "bpf"
    if not isinstance(sources, Path) or not (sources / "datapath.c").is_file():
        raise DatapathUnavailable(f"eBPF datapath unavailable: the C sources are not files "
                                  f"on disk at {sources} (install the package unzipped)")
    return sources


@dataclass(frozen=True)
class MapSizes:
    """Map capacities, compiled in as -D flags (changing them needs a new pin dir)."""

    endpoints: int = 4096
    ipcache: int = 524288
    policy: int = 65536
    ct: int = 262144
    counters: int = 65536
    lb_frontends: int = 65536  # (ClusterIP, port, protocol) frontends
    lb_backends: int = 262144  # backend slots over all frontends
    flow_pages: int = 64  # ring buffer size in pages (power of two)


def pin_dir(node: str, pin_root: Path = DEFAULT_PIN_ROOT) -> Path:
    if not node or "/" in node or node.startswith("."):
        raise ValueError(f"bad node name {node!r}")
    return pin_root / node / f"v{LAYOUT_VERSION}"


def check_environment(pin_root: Path = DEFAULT_PIN_ROOT) -> None:
    """Raise DatapathUnavailable naming what is missing (root, bcc, bpffs, headers)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root privileges (CAP_BPF/CAP_NET_ADMIN)")
    try:
        import bcc  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        missing.append("the bcc Python module (Debian package python3-bpfcc)")
    if not Path(f"/lib/modules/{os.uname().release}/build").exists():
        missing.append(f"kernel headers at /lib/modules/{os.uname().release}/build")
    if not Path("/sys/fs/bpf").is_dir():
        missing.append("bpffs at /sys/fs/bpf")
    elif pin_root.is_relative_to("/sys/fs/bpf") and not os.path.ismount("/sys/fs/bpf"):
        missing.append("bpffs mounted at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)")
    if missing:
        raise DatapathUnavailable("eBPF datapath unavailable: missing " + ", ".join(missing))


class Loaded:
    """One compiled program set plus its maps, pinned under ``pins``."""

    def __init__(self, node: str, pin_root: Path = DEFAULT_PIN_ROOT, sizes: MapSizes | None = None):
        check_environment(pin_root)
        import bcc

        self.sizes = sizes or MapSizes()
        self.pins = pin_dir(node, pin_root)
        self.pins.mkdir(parents=True, exist_ok=True)
        s = self.sizes
        sources = bpf_sources()
        cflags = [
            f"-I{sources}",
            f'-DPIN_DIR="{self.pins}"',
            f"-DMAX_ENDPOINTS={s.endpoints}",
            f"-DMAX_IPCACHE={s.ipcache}",
            f"-DMAX_POLICY={s.policy}",
            f"-DMAX_CT={s.ct}",
            f"-DMAX_COUNTERS={s.counters}",
            f"-DMAX_LB_FRONTENDS={s.lb_frontends}",
            f"-DMAX_LB_BACKENDS={s.lb_backends}",
            f"-DFLOW_PAGES={s.flow_pages}",
        ]
        self.bpf: Any = bcc.BPF(src_file=str(sources / "datapath.c").encode(), cflags=cflags)
        self.fns: dict[str, Any] = {
            name: self.bpf.load_func(name.encode(), bcc.BPF.SCHED_CLS) for name in PROGRAMS
        }
        self.maps: dict[str, RawMap] = {}
        for name, (ksize, vsize) in SIZES.items():
            table = self.bpf[name.encode()]
            leaf = getattr(table, "sLeaf", table.Leaf)  # per-CPU maps: one CPU's value
            got = (ctypes.sizeof(table.Key), ctypes.sizeof(leaf))
            if got != (ksize, vsize):
                raise DatapathUnavailable(
                    f"map {name}: layout.py says {(ksize, vsize)}, bulkhead.h says {got}"
                )
            self.maps[name] = RawMap(
                name, table.map_fd, ksize, vsize, table.max_entries, mirrored=name in MIRRORED
            )

    def prog(self, name: str) -> tuple[int, str]:
        """(fd, name) of one program, for a tc filter."""
        fn = self.fns[name]
        return fn.fd, fn.name.decode()

    def close(self) -> None:
        """Drop our fds; attached programs and pinned maps stay alive."""
        self.bpf.cleanup()


def remove_pins(node: str, pin_root: Path = DEFAULT_PIN_ROOT) -> None:
    """Unpin every map of a node (all layout versions); programs keep their maps."""
    shutil.rmtree(pin_root / node, ignore_errors=True)
