"""Fixtures for the real-kernel datapath tests.

``datapath_env`` gates on root, bcc, bpffs and kernel headers: without them a
test skips, or FAILS when BULKHEAD_REQUIRE_DATAPATH=1.  ``cluster`` builds one
two-node topology per session (compiling the programs once per node) and
always tears it down.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.datapath.loader import DEFAULT_PIN_ROOT, DatapathUnavailable, check_environment
from tests.datapath import topology


def datapath_missing() -> str | None:
    """Why the datapath cannot be tested here, or None."""
    try:
        check_environment()
    except DatapathUnavailable as e:
        return str(e)
    for tool in ("ip", "curl", "ping"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def require_datapath() -> None:
    reason = datapath_missing()
    if reason is None:
        return
    if os.environ.get("BULKHEAD_REQUIRE_DATAPATH") == "1":
        pytest.fail(f"BULKHEAD_REQUIRE_DATAPATH=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def datapath_env() -> None:
    require_datapath()


@pytest.fixture(scope="session")
def pin_root(datapath_env: None) -> Path:
    return DEFAULT_PIN_ROOT


@pytest.fixture(scope="session")
def cluster(pin_root: Path) -> Iterator[topology.Cluster]:
    c = topology.build(pin_root)
    try:
        yield c
    finally:
        topology.destroy(c, pin_root)


@pytest.fixture
def clean_policy(cluster: topology.Cluster) -> Iterator[topology.Cluster]:
    """Every endpoint unrestricted before and after the test."""

    def reset() -> None:
        for pod in cluster.pods.values():
            dp = cluster.dp(pod.node)
            dp.sync_policy(pod.ep_id, [], ingress_enforced=False, egress_enforced=False)

    reset()
    try:
        yield cluster
    finally:
        reset()


@pytest.fixture
def unique_suffix() -> str:
    return secrets.token_hex(3)
