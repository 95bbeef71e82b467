"""Egress to the world (integration/lab/world.py) with Cilium's semantics: an address no
ipcache entry covers is `world` (identity 2) and allowed traffic to it leaves through the
node's own routing (no tunnel); a toCIDR prefix gets a CIDR identity whose ipcache entry
selects exactly that prefix, so the flow shows the CIDR identity, not world."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from integration.lab import world
from integration.lab.story import Result, Scenario
from integration.labfixture import running_lab

pytestmark = [pytest.mark.datapath, pytest.mark.timeout(300)]

WEB, OTHER = world.NAMES["api.world.test"], world.NAMES["other.world.test"]
POLICY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: egress, namespace: default}}
spec:
  endpointSelector: {{matchLabels: {{app: client}}}}
  egress:
  - {peer}
"""


def test_pod_to_world_with_entities_and_cidrs(tmp_path: Path) -> None:
    with running_lab(tmp_path, nodes=1, world=True) as lab:
        story = Scenario(lab.name, env={"BULKHEAD_STATE_DIR": os.environ["BULKHEAD_STATE_DIR"]})
        lab.pod_create("client", "n1", "default", ["app=client"])

        def curl(target: str) -> Result:
            return story.run(story.lab_cmd, "exec", "client", "--", "curl", "-s", "-m", "3",
                             f"http://{target}/")

        def apply(peer: str) -> None:
            policy_file = tmp_path / "egress.yaml"
            policy_file.write_text(POLICY.format(peer=peer))
            story.run(story.cli, "policy", "apply", "-f", str(policy_file), "--wait",
                      "--timeout", "30", check=True)

        def flows(ip: str) -> list[dict[str, object]]:
            return [f for f in story.observe("--to-ip", ip, "--from-pod", "default/client")
                    if f.get("type", "L3_L4") != "L7"]

        # No policy: the world answers (not dropped as an unknown destination), as world.
        assert curl(WEB).stdout.strip() == "world"
        seen = flows(WEB)
        assert seen and all(f["verdict"] == "FORWARDED" for f in seen), seen
        assert seen[-1]["destination"]["identity"] == 2  # type: ignore[index]

        # toEntities: [world] allows it.
        apply("toEntities: [world]")
        assert curl(OTHER).stdout.strip() == "world"

        # A toCIDR naming another address: the world address is denied (as world) ...
        apply(f"toCIDR: ['{OTHER}/32']")
        assert curl(WEB).returncode == 28
        denied = [f for f in flows(WEB) if f["verdict"] == "DROPPED"]
        assert denied and denied[-1]["drop_reason"] == "Policy denied", denied
        assert denied[-1]["destination"]["identity"] == 2  # type: ignore[index]
        # ... and the named one allowed, with its precise CIDR identity in the flow.
        assert curl(OTHER).stdout.strip() == "world"
        allowed = [f for f in flows(OTHER) if f["verdict"] == "FORWARDED"]
        assert allowed, flows(OTHER)
        ident = allowed[-1]["destination"]["identity"]  # type: ignore[index]
        assert isinstance(ident, int) and ident >= 256, allowed[-1]
        labels = story.run(story.cli, "identity", "get", str(ident), check=True).stdout
        assert f"cidr:{OTHER}/32" in labels

        # A toCIDR naming the web server's address allows it (and no longer the other one).
        apply(f"toCIDRSet: [{{cidr: '{WEB}/32'}}]")
        assert curl(WEB).stdout.strip() == "world"
        assert curl(OTHER).returncode == 28
