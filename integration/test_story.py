"""The Star Wars scenario of `make run`, asserted (not printed) in a lab of its own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from integration.lab.story import Scenario
from integration.labfixture import running_lab

pytestmark = pytest.mark.datapath


def test_star_wars_scenario(tmp_path: Path) -> None:
    with running_lab(tmp_path) as lab:
        story = Scenario(lab.name, env={"BULKHEAD_STATE_DIR": os.environ["BULKHEAD_STATE_DIR"]})
        story.setup()
        # 1. Without a policy both ships land, across nodes.
        assert story.land("tiefighter", "deathstar-2").stdout.strip() == "Ship landed"
        assert story.land("xwing", "deathstar-1").stdout.strip() == "Ship landed"
        # 2. rule1, waited for on every node.
        applied = story.apply_policy()
        assert "applied on 2 node(s)" in applied.stdout
        # 3. The tiefighter lands, on both deathstars; the xwing times out (not refused).
        assert story.land("tiefighter", "deathstar-2").stdout.strip() == "Ship landed"
        assert story.land("tiefighter", "deathstar-1").stdout.strip() == "Ship landed"
        assert story.land("xwing", "deathstar-1").returncode == 28
        assert story.land("xwing", "deathstar-2").returncode == 28
        # The deathstar's other endpoints answer as the service defines them.
        ds = story.ip("deathstar-1")
        exhaust = story.run(story.lab_cmd, "exec", "tiefighter", "--", "curl", "-s", "-m", "3",
                            "-o", "/dev/null", "-w", "%{http_code}", "-XPUT",
                            f"http://{ds}/v1/exhaust-port")
        assert exhaust.stdout == "503"
        # 4. The verdicts, as `bulkhead observe` shows them.
        flows = story.observe("--to-label", "class=deathstar")
        assert any(f["verdict"] == "FORWARDED" and f["source"]["pod"] == "tiefighter"
                   and f["destination"]["port"] == 80 for f in flows)
        drops = [f for f in flows if f["verdict"] == "DROPPED"]
        assert drops and all(f["source"]["pod"] == "xwing" for f in drops)
        assert all(f["drop_reason"].startswith("Policy denied") for f in drops)
        assert all(f["tcp_flags"] == ["SYN"] for f in drops)
        # 5. Ingress enforcement on the deathstars only.
        enforced = {e["name"] for e in story.endpoints() if e["ingress_enforced"]}
        assert enforced == {"deathstar-1", "deathstar-2"}
