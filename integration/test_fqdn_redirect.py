"""The datapath redirects port 53 of pods under `rules.dns` to the node's DNS proxy, whatever
server they ask (as Cilium does): a pod querying the world's DNS server 192.0.2.200 directly
gets its answer (from that address) through the proxy, which learns it for `toFQDNs` and
enforces `rules.dns`, over UDP and TCP (forwarded over TCP: a large answer arrives whole); a
pod without DNS rules talks to that server untouched."""

from __future__ import annotations

import json
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
metadata: {name: direct-dns, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toEntities: [world]
    toPorts:
    - ports: [{port: "53", protocol: ANY}]
      rules:
        dns: [{matchPattern: "*.world.test"}]
  - toFQDNs: [{matchName: api.world.test}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
"""
API, OTHER = world.NAMES["api.world.test"], world.NAMES["other.world.test"]
# A query from inside the pod straight to the world's DNS server (argv: name, udp|tcp):
# prints the rcode, the address the answer came from (UDP) and the answer's IPs.
ASK = ("import sys, socket, dns.message, dns.query, dns.rcode\n"
       "q = dns.message.make_query(sys.argv[1], 'A')\n"
       f"server = {world.DNS_IP!r}\n"
       "if sys.argv[2] == 'tcp':\n"
       "    r, source = dns.query.tcp(q, server, timeout=5), server\n"
       "else:\n"
       "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)\n"
       "    s.sendto(q.to_wire(), (server, 53)); wire, (source, _) = s.recvfrom(65535)\n"
       "    r = dns.message.from_wire(wire)\n"
       "print(dns.rcode.to_text(r.rcode()), source, "
       "*[rd.address for s in r.answer for rd in s])")


def test_direct_queries_are_redirected_to_the_dns_proxy(tmp_path: Path) -> None:
    with running_lab(tmp_path, nodes=1, world=True) as lab:
        story = Scenario(lab.name, env={"BULKHEAD_STATE_DIR": os.environ["BULKHEAD_STATE_DIR"]})
        lab.pod_create("client", "n1", "default", ["app=client"])
        lab.pod_create("plain", "n1", "default", ["app=plain"])

        def curl(pod: str, target: str) -> Result:
            return story.run(story.lab_cmd, "exec", pod, "--", "curl", "-s", "-m", "3",
                             f"http://{target}/")

        def ask(pod: str, name: str, transport: str = "udp") -> list[str]:
            return story.run(story.lab_cmd, "exec", pod, "--", sys.executable, "-c", ASK,
                             name, transport, check=True).stdout.split()

        def cache() -> set[tuple[str, str, str]]:
            out = story.run(story.cli, "fqdn", "--agent-socket", lab.state().nodes["n1"].socket,
                            "cache", "list", "-o", "json", check=True).stdout
            return {(r["endpoint"], r["name"], r["ip"]) for r in json.loads(out)["entries"]}

        policy_file = tmp_path / "direct-dns.yaml"
        policy_file.write_text(POLICY)
        story.run(story.cli, "policy", "apply", "-f", str(policy_file), "--wait", "--timeout",
                  "30", check=True)

        # Asked directly, the world's server answers through the proxy (from its own address),
        # and the answer is learnt: api.world.test is reachable at once.
        assert ask("client", "api.world.test.") == ["NOERROR", world.DNS_IP, API]
        assert ("default/client", "api.world.test.", API) in cache()
        assert curl("client", API).stdout.strip() == "world"
        # A name outside the DNS rules, sent straight to the world: REFUSED by the proxy
        # (the world itself would say NXDOMAIN).
        assert ask("client", "www.example.test.") == ["REFUSED", world.DNS_IP]
        # TCP is redirected too, and forwarded over TCP (RFC 7766): an answer larger than
        # 512 bytes (many.world.test's 40 addresses; the world truncates it over UDP) arrives
        # whole through the proxy, every address learnt.
        assert ask("client", "other.world.test.", "tcp") == ["NOERROR", world.DNS_IP, OTHER]
        assert ("default/client", "other.world.test.", OTHER) in cache()
        many = ask("client", f"{world.MANY_NAME}.", "tcp")
        assert many[:2] == ["NOERROR", world.DNS_IP]
        assert sorted(many[2:]) == sorted(world.MANY_IPS)
        assert {ip for endpoint, name, ip in cache()
                if name == f"{world.MANY_NAME}."} == set(world.MANY_IPS)
        # Over UDP the pod gets the world's truncated answer (and would retry over TCP).
        assert ask("client", f"{world.MANY_NAME}.") == ["NOERROR", world.DNS_IP]
        flows = story.observe("--type", "dns")
        assert any(f["l7"]["dns"]["query"] == "www.example.test."
                   and f["l7"]["dns"]["rcode"] == "REFUSED" and f["verdict"] == "DROPPED"
                   and world.DNS_IP in json.dumps(f) for f in flows)

        # A pod no DNS rule selects is not redirected: its query to the world's server is
        # plain L3/L4 traffic to the world (forwarded: no policy selects the pod), answered by
        # that server itself; nothing is learnt and the proxy sees no DNS flow of it.
        plain = story.run(story.lab_cmd, "exec", "plain", "--", sys.executable, "-c", ASK,
                          "www.world.test.", "udp")
        assert plain.stdout.split() == ["NOERROR", world.DNS_IP, "192.0.2.203"], plain.stderr
        assert any(f["source"]["pod"] == "plain" and f["destination"]["ip"] == world.DNS_IP
                   and f["destination"]["port"] == 53 and f["type"] == "L3_L4"
                   for f in story.observe("--from-pod", "default/plain"))
        assert not {row for row in cache() if row[0] == "default/plain"}
        assert not [f for f in story.observe("--type", "dns")
                    if f["l7"]["dns"]["query"] == "www.world.test."]
