"""The Star Wars scenario of `make run`, asserted (not printed) in a lab of its own."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from integration.lab.story import L7_POLICY, Scenario
from integration.labfixture import running_lab

pytestmark = pytest.mark.datapath


def test_star_wars_scenario(tmp_path: Path) -> None:
    with running_lab(tmp_path) as lab:
        story = Scenario(lab.name, env={"BULKHEAD_STATE_DIR": os.environ["BULKHEAD_STATE_DIR"]})
        # Secure by default: the lab's control plane refuses plaintext, the CLI presents the
        # admin credential it finds through the state dir, each agent joined with a token.
        assert story.run(story.cli, "--insecure", "status").returncode == 3
        assert story.run(story.cli, "status").returncode == 0
        for node in ("n1", "n2"):
            assert (lab.state().directory / f"agent-{node}" / "node.crt").exists()
            assert not (lab.state().directory / f"{node}.token").exists()
        story.setup()
        deathstars = story.deathstars()
        assert len(deathstars) == 2
        assert {p["node"] for p in story.pods() if p["name"] in deathstars} == {"n1", "n2"}
        # The ships call the deathstar SERVICE by its DNS name, which their node's agent
        # answers with the ClusterIP (not a pod's address).
        assert story.target == "deathstar.default.svc.cluster.local"
        service = json.loads(story.run(story.cli, "service", "get", "default/deathstar", "-o",
                                       "json", check=True).stdout)
        resolved = story.run(story.lab_cmd, "exec", "tiefighter", "--", "getent", "hosts",
                             story.target, check=True).stdout.split()
        assert resolved[0] == service["cluster_ip"]
        assert service["cluster_ip"] not in {p["ip"] for p in story.pods()}
        # 1. Without a policy both ships land, through the service and on each deathstar
        # directly (across nodes and on the same node).
        assert story.land("tiefighter").stdout.strip() == "Ship landed"
        assert story.land("xwing").stdout.strip() == "Ship landed"
        for pod in deathstars:
            assert story.land("xwing", pod).stdout.strip() == "Ship landed"
        # 2. rule1, waited for on every node.
        applied = story.apply_policy()
        assert "applied on 2 nodes" in applied.stdout
        # 3. The tiefighter lands, through the service and on both deathstars; the xwing times
        # out (not refused), through the service too: policy applies to the backend.
        assert story.land("tiefighter").stdout.strip() == "Ship landed"
        for pod in deathstars:
            assert story.land("tiefighter", pod).stdout.strip() == "Ship landed"
            assert story.land("xwing", pod).returncode == 28
        assert story.land("xwing").returncode == 28
        # The deathstar's other endpoints answer as the service defines them.
        exhaust = story.run(story.lab_cmd, "exec", "tiefighter", "--", "curl", "-s", "-m", "3",
                            "-o", "/dev/null", "-w", "%{http_code}", "-XPUT",
                            f"http://{story.target}/v1/exhaust-port")
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
        assert enforced == set(deathstars)
        # 6-7. The demo's L7 step: POST /v1/request-landing only, checked request by request
        # by the deathstars' nodes' proxies, through the service as the demo calls it.
        assert "applied on 2 nodes" in story.apply_policy(L7_POLICY).stdout
        assert story.land("tiefighter").stdout.strip() == "Ship landed"
        for pod in deathstars:          # the deathstar on the ship's node and the other one
            assert story.land("tiefighter", pod).stdout.strip() == "Ship landed"
        assert story.exhaust("tiefighter").stdout.strip() == "Access denied"
        assert story.land("xwing").returncode == 28
        # 8. The proxies' flows: the denied PUT and the forwarded POST, with the URL's Host.
        l7 = story.observe("--type", "l7")    # HTTP requests and the pods' DNS queries
        requests = [(f["verdict"], f["l7"]["http"]["method"], f["l7"]["http"]["url"])
                    for f in l7 if f["l7"]["type"] == "request" and "http" in f["l7"]]
        assert requests and all("http" in f["l7"] for f in story.observe("--type", "http"))
        assert ("DROPPED", "PUT", f"http://{story.target}/v1/exhaust-port") in requests
        assert ("FORWARDED", "POST", f"http://{story.target}/v1/request-landing") in requests
        assert all(f["type"] == "L7" for f in l7)
