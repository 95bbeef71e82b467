"""A bpf lab for integration tests: unique name, private state dir, always torn down."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkhead import tls
from bulkhead.defaults import EXTERNAL_IP_FILE, SERVER_FILE
from cli.commands.agent import AGENTS_DIR
from integration.lab import netns
from integration.lab.lab import Lab


def require_lab() -> None:
    if os.geteuid() != 0:
        if os.environ.get("BULKHEAD_REQUIRE_DATAPATH") == "1":
            pytest.fail("the lab needs root (network namespaces, BPF)")
        pytest.skip("the lab needs root (network namespaces, BPF)")


@contextlib.contextmanager
def running_lab(state_dir: Path, nodes: int = 2, clusters: int = 1, world: bool = False
                ) -> Iterator[Lab]:
    """Yields a lab that is up (`world`: with its world namespace, integration/lab/world.py);
    `BULKHEAD_STATE_DIR` points at its state while it lives."""
    require_lab()
    name = f"t{uuid.uuid4().hex[:6]}"
    saved = os.environ.get("BULKHEAD_STATE_DIR")
    os.environ["BULKHEAD_STATE_DIR"] = str(state_dir)
    lab = Lab(name, say=lambda _msg: None)
    try:
        lab.up(nodes, clusters=clusters, with_world=world)
        yield lab
    finally:
        lab.down()
        leftovers = netns.namespaces(f"bhl-{name}-")
        if saved is None:
            os.environ.pop("BULKHEAD_STATE_DIR", None)
        else:
            os.environ["BULKHEAD_STATE_DIR"] = saved
        assert leftovers == [], f"lab down left {leftovers}"
        # the address, the admin pointer, agent links, and the lab's credentials and tokens
        candidates = [state_dir / SERVER_FILE, state_dir / EXTERNAL_IP_FILE,
                      state_dir / tls.ADMIN_POINTER,
                      *(state_dir / AGENTS_DIR).glob("*"), state_dir / "labs" / name]
        published = [p.name for p in candidates if p.exists() or p.is_symlink()]
        assert published == [], f"lab down left {published} in {state_dir}"
