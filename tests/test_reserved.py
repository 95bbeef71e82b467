"""The reserved identities are one table (bulkhead.reserved); the BPF header the agent compiles
repeats some of them as #defines, and both must say the same numbers."""

from __future__ import annotations

import re

from bulkhead.reserved import ID_HOST, ID_REMOTE_NODE, ID_WORLD, RESERVED, reserved_labels
from nodeagent.datapath.layout import ID_ANY, LAYOUT_VERSION
from nodeagent.datapath.loader import bpf_sources


def header_defines() -> dict[str, int]:
    text = (bpf_sources() / "bulkhead.h").read_text()
    return {name: int(value)
            for name, value in re.findall(r"^#define\s+(\w+)\s+(\d+)\b", text, re.MULTILINE)}


def test_header_identities_agree_with_the_reserved_table() -> None:
    defines = header_defines()
    named = {name.removeprefix("ID_").lower().replace("_", "-"): value
             for name, value in defines.items() if name.startswith("ID_") and name != "ID_ANY"}
    assert named, "the header defines no reserved identity"
    assert named == {name: RESERVED[name] for name in named}
    assert (ID_HOST, ID_WORLD, ID_REMOTE_NODE) == (defines["ID_HOST"], defines["ID_WORLD"],
                                                   defines["ID_REMOTE_NODE"])
    assert defines["ID_ANY"] == ID_ANY and ID_ANY not in RESERVED.values()
    assert defines["BH_LAYOUT_VERSION"] == LAYOUT_VERSION


def test_reserved_labels() -> None:
    assert reserved_labels(ID_REMOTE_NODE) == ("reserved:remote-node",)
    assert sorted(RESERVED.values()) == list(range(1, 12))
