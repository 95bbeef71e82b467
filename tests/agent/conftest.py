"""Agent tests run real processes on the real kernel: skip without BPF, or FAIL under
BULKHEAD_REQUIRE_DATAPATH=1 (the datapath tests' gate), and need the etcd binary."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.agent import cluster
from tests.datapath.conftest import require_datapath


@pytest.fixture(scope="module")
def lab() -> Iterator[cluster.Cluster]:
    require_datapath()
    if shutil.which("etcd") is None:
        pytest.skip("the etcd binary is not installed")
    c = cluster.build()
    try:
        yield c
    finally:
        cluster.destroy(c)
