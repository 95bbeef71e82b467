"""FQDN egress end to end in a lab with a world (integration/lab/world.py): a pod allowed
`api.world.test` reaches it and not `other.world.test` though both resolve; a query outside
its DNS rules gets REFUSED; an address whose TTL ran out closes to new connections; the learnt
mapping survives an agent restart; `fqdn cache list` and `observe --type dns` show it."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from integration.lab import world
from integration.lab.story import Result, Scenario
from integration.labfixture import running_lab

pytestmark = [pytest.mark.datapath, pytest.mark.timeout(300)]

POLICY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: to-api, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEntities: [host]
    toPorts:
    - ports: [{port: "53", protocol: ANY}]
      rules:
        dns: [{matchPattern: "*.world.test"}]
  - toFQDNs: [{matchName: api.world.test}, {matchName: www.world.test}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
"""
API, OTHER, WWW = (world.NAMES[n] for n in ("api.world.test", "other.world.test",
                                            "www.world.test"))
# A DNS query from inside the pod, straight to its node's DNS address: prints rcode and IPs.
ASK = ("import sys, dns.message, dns.query; r = dns.query.udp(dns.message.make_query("
       "sys.argv[1], 'A'), '169.254.1.1', timeout=5); "
       "print(dns.rcode.to_text(r.rcode()), *[rd.address for s in r.answer for rd in s])")


def wait_for(check: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return check()


def test_fqdn_policy_end_to_end(tmp_path: Path) -> None:
    with running_lab(tmp_path, nodes=1, world=True) as lab:
        story = Scenario(lab.name, env={"BULKHEAD_STATE_DIR": os.environ["BULKHEAD_STATE_DIR"]})
        lab.pod_create("client", "n1", "default", ["app=client"])

        def curl(target: str) -> Result:
            return story.run(story.lab_cmd, "exec", "client", "--", "curl", "-s", "-m", "3",
                             f"http://{target}/")

        def ask(name: str) -> list[str]:
            return story.run(story.lab_cmd, "exec", "client", "--", sys.executable, "-c",
                             ASK, name, check=True).stdout.split()

        def cache() -> list[dict[str, object]]:
            out = story.run(story.cli, "fqdn", "--agent-socket", lab.state().nodes["n1"].socket,
                            "cache", "list", "-o", "json", check=True).stdout
            return list(json.loads(out)["entries"])

        # Without a policy the world answers (the agent forwards to the world's DNS).
        assert ask("api.world.test.") == ["NOERROR", API]
        assert curl("api.world.test.").stdout.strip() == "world"
        policy_file = tmp_path / "to-api.yaml"
        policy_file.write_text(POLICY)
        story.run(story.cli, "policy", "apply", "-f", str(policy_file), "--wait", "--timeout",
                  "30", check=True)

        # Both names resolve (both match the DNS rule); only the toFQDNs one is reachable,
        # from the first packet after the answer.
        assert ask("other.world.test.") == ["NOERROR", OTHER]
        assert curl("other.world.test.").returncode == 28
        assert curl("api.world.test.").stdout.strip() == "world"
        # A name outside the DNS rules: REFUSED, never forwarded.
        assert ask("www.example.test.") == ["REFUSED"]
        rows = cache()
        assert {(r["name"], r["ip"]) for r in rows} >= {("api.world.test.", API),
                                                        ("other.world.test.", OTHER)}
        assert all(r["endpoint"] == "default/client" for r in rows)
        flows = story.observe("--type", "dns")
        assert any(f["l7"]["dns"]["query"] == "www.example.test."
                   and f["l7"]["dns"]["rcode"] == "REFUSED" and f["verdict"] == "DROPPED"
                   for f in flows)
        assert any(f["l7"]["type"] == "response" and API in f["l7"]["dns"]["ips"]
                   for f in flows)

        # TTL expiry: www answered with a 2 s TTL works at once, then closes to new
        # connections when its TTL has run out.
        world.set_ttl(lab.state(), 2)
        assert ask("www.world.test.") == ["NOERROR", WWW]
        assert curl(WWW).stdout.strip() == "world"
        assert wait_for(lambda: curl(WWW).returncode == 28)
        assert ("www.world.test.", WWW) not in {(r["name"], r["ip"]) for r in cache()}

        # An agent restart keeps what was learnt: api's address stays reachable without a
        # new lookup, with the same identity.
        world.set_ttl(lab.state(), world.DEFAULT_TTL)
        before = {r["ip"]: r["identity"] for r in cache()}
        lab.restart_agent("n1")
        assert {r["ip"]: r["identity"] for r in cache()}.get(API) == before[API]
        assert wait_for(lambda: curl(API).stdout.strip() == "world")
        assert curl(OTHER).returncode == 28
