"""The lab's topology with `--datapath=none` (plain kernel routing over VXLAN): the baseline the
datapath benchmark compares against, driven through `bulkhead-lab` as an operator would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.lab import netns

pytestmark = pytest.mark.datapath


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[list[str]]:
    if os.geteuid() != 0:
        if os.environ.get("BULKHEAD_REQUIRE_DATAPATH") == "1":
            pytest.fail("the lab needs root (network namespaces)")
        pytest.skip("the lab needs root (network namespaces)")
    name = f"t{uuid.uuid4().hex[:6]}"
    base = [sys.executable, "-m", "integration.lab.cli", "--name", name]
    try:
        yield base
    finally:
        lab_run(base, str(tmp_path), "down")
        assert netns.namespaces(f"bhl-{name}-") == [], "down left namespaces behind"


def lab_run(base: list[str], tmp: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*base, *args], env={**os.environ, "BULKHEAD_STATE_DIR": tmp},
                          capture_output=True, text=True, timeout=120)


def test_plain_lab_routes_pods_across_nodes(lab: list[str], tmp_path: Path) -> None:
    tmp = str(tmp_path)
    up = lab_run(lab, tmp, "up", "--nodes", "2", "--datapath", "none")
    assert up.returncode == 0, up.stderr
    assert "is up" in up.stderr
    again = lab_run(lab, tmp, "up", "--nodes", "2", "--datapath", "none")
    assert again.returncode == 0, "up is not idempotent: " + again.stderr
    assert lab_run(lab, tmp, "pod", "create", "web", "--node", "n1", "--labels", "app=web",
                   "--serve", "80").returncode == 0
    assert lab_run(lab, tmp, "pod", "create", "client", "--node", "n2").returncode == 0
    pods = json.loads(lab_run(lab, tmp, "pod", "list", "-o", "json").stdout)
    by_name = {p["name"]: p for p in pods}
    assert by_name["web"]["node"] == "n1" and by_name["client"]["node"] == "n2"
    assert "k8s:app=web" in by_name["web"]["labels"]
    assert "k8s:io.kubernetes.pod.namespace=default" in by_name["web"]["labels"]
    web_ip = by_name["web"]["ip"]
    got = lab_run(lab, tmp, "exec", "client", "--", "curl", "-s", "-m", "5", f"http://{web_ip}/")
    assert got.returncode == 0 and got.stdout.strip() == "web"
    # exec passes the command's exit code through
    assert lab_run(lab, tmp, "exec", "client", "--", "sh", "-c", "exit 7").returncode == 7
    missing = lab_run(lab, tmp, "pod", "create", "x", "--node", "n9")
    assert missing.returncode == 1 and "no node 'n9'" in missing.stderr
    assert lab_run(lab, tmp, "pod", "delete", "client").returncode == 0
    assert [p["name"] for p in json.loads(lab_run(lab, tmp, "pod", "list", "-o",
                                                  "json").stdout)] == ["web"]
