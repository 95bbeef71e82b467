"""Integration tests need a Docker engine (testcontainers); `make test` starts one."""

from __future__ import annotations

import os

import pytest


def docker_available() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session", autouse=True)
def _require_docker(request: pytest.FixtureRequest) -> None:
    if not docker_available():
        if os.environ.get("CI") or os.environ.get("BULKHEAD_REQUIRE_DATAPATH") == "1":
            pytest.fail("no Docker engine: run `make setup` (starts dockerd)")
        pytest.skip("no Docker engine: run `make setup` (starts dockerd)")
