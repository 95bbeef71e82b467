"""Tests marked `docker` (testcontainers) need a Docker engine; `make test` starts one.

Only those tests are gated: without an engine they skip, or FAIL under CI or
BULKHEAD_REQUIRE_DATAPATH=1. Every other integration test runs without Docker.
"""

from __future__ import annotations

import functools
import os

import pytest

NO_DOCKER = "no Docker engine: run `make setup` (starts dockerd)"


@functools.cache
def docker_available() -> bool:
    """Asked once per session, and only when a test needs Docker."""
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


def require_docker() -> None:
    if not docker_available():
        if os.environ.get("CI") or os.environ.get("BULKHEAD_REQUIRE_DATAPATH") == "1":
            pytest.fail(NO_DOCKER)
        pytest.skip(NO_DOCKER)


@pytest.fixture(autouse=True)
def _require_docker(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("docker") is not None:
        require_docker()
