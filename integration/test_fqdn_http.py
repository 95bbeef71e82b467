"""`toFQDNs` with `rules.http` end to end in a lab with a world (Cilium's meaning): a pod's
connections to the addresses learnt for `api.world.test` go to the node's HTTP proxy, which
passes `GET /allowed` (200) and answers `GET /other` 403; `other.world.test`, which resolves
too, is dropped; the proxy's connection to the world leaves from the node.  `toEntities:
[world]` with HTTP rules goes the same way."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from integration.lab import world
from integration.lab.story import Result, Scenario
from integration.labfixture import running_lab

pytestmark = [pytest.mark.datapath, pytest.mark.timeout(300)]

POLICY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-http, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEntities: [host]
    toPorts:
    - ports: [{port: "53", protocol: ANY}]
      rules:
        dns: [{matchPattern: "*.world.test"}]
  - toFQDNs: [{matchName: api.world.test}]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        http: [{method: GET, path: /allowed}]
"""
WORLD_POLICY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: world-http, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: browser}}
  egress:
  - toEntities: [world]
    toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules:
        http: [{method: GET, path: /allowed}]
"""
API, OTHER = world.NAMES["api.world.test"], world.NAMES["other.world.test"]
ASK = ("import sys, dns.message, dns.query; r = dns.query.udp(dns.message.make_query("
       "sys.argv[1], 'A'), '169.254.1.1', timeout=5); "
       "print(dns.rcode.to_text(r.rcode()), *[rd.address for s in r.answer for rd in s])")


def test_fqdn_egress_with_http_rules_goes_through_the_proxy(tmp_path: Path) -> None:
    with running_lab(tmp_path, nodes=1, world=True) as lab:
        story = Scenario(lab.name, env={"BULKHEAD_STATE_DIR": os.environ["BULKHEAD_STATE_DIR"]})
        lab.pod_create("client", "n1", "default", ["app=client"])
        lab.pod_create("browser", "n1", "default", ["app=browser"])

        def get(target: str, path: str, pod: str = "client") -> Result:
            return story.run(story.lab_cmd, "exec", pod, "--", "curl", "-s", "-m", "3",
                             "-o", "/dev/null", "-w", "%{http_code}", f"http://{target}{path}")

        def ask(name: str) -> list[str]:
            return story.run(story.lab_cmd, "exec", "client", "--", sys.executable, "-c",
                             ASK, name, check=True).stdout.split()

        for name, text in (("api-http", POLICY), ("world-http", WORLD_POLICY)):
            policy_file = tmp_path / f"{name}.yaml"
            policy_file.write_text(text)
            story.run(story.cli, "policy", "apply", "-f", str(policy_file), "--wait",
                      "--timeout", "30", check=True)

        # Before a lookup nothing is learnt: the address is not allowed at all.
        assert get(API, "/allowed").returncode == 28
        assert ask("api.world.test.") == ["NOERROR", API]
        assert ask("other.world.test.") == ["NOERROR", OTHER]
        # Learnt: redirected to the proxy, which enforces the HTTP rules.
        assert get("api.world.test.", "/allowed").stdout == "200"
        assert get("api.world.test.", "/other").stdout == "403"
        # Resolved too, but no toFQDNs selects it: dropped.
        other = get(OTHER, "/allowed")
        assert (other.returncode, other.stdout) == (28, "000")

        requests = {(f["verdict"], f["l7"]["http"]["url"].rsplit("/", 1)[-1])
                    for f in story.observe("--type", "http")
                    if f["l7"]["type"] == "request"}
        assert {("FORWARDED", "allowed"), ("DROPPED", "other")} <= requests
        drops = story.observe("--from-pod", "default/client", "--verdict", "DROPPED")
        assert any(f["destination"]["ip"] == OTHER for f in drops)

        # HTTP rules for the world entity: the same proxy path, without any lookup.
        assert get(OTHER, "/allowed", "browser").stdout == "200"
        assert get(OTHER, "/other", "browser").stdout == "403"
