"""`bulkhead-agent --metrics-listen`: a scrape after a denied and an allowed connection shows
the drop and forwarded counters moved and reports map pressure."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bulkhead.v1 import policy_pb2, policy_pb2_grpc, subscription_pb2, subscription_pb2_grpc
from tests.agent.cluster import Cluster, curl
from tests.agent.test_agent import EMPIRE, apply_rule1, cli

pytestmark = pytest.mark.datapath

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(url: str, ok: Callable[[Samples], bool], timeout: float = 5.0) -> Samples:
    """The agent reads its ring buffer every 50 ms and map counts every few seconds."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if ok(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def test_drops_forwarded_and_map_pressure(lab: Cluster) -> None:
    server = lab.add_pod("deathstar", "n2", [*EMPIRE, "k8s:class=deathstar"], serve=True)
    tie = lab.add_pod("tiefighter", "n1", [*EMPIRE, "k8s:class=tiefighter"])
    xwing = lab.add_pod("xwing", "n1", ["k8s:org=alliance", "k8s:class=xwing"])
    apply_rule1(lab)
    url = lab.nodes["n2"].metrics_url
    before = scrape(url)
    assert value(before, "bulkhead_endpoints") == 1
    assert value(before, "bulkhead_applied_revision") > 0

    assert curl(xwing, server.ip, 80) == 28  # denied by the server's ingress policy on n2
    after = wait_for(url, lambda s: value(s, "bulkhead_drops_total", reason="Policy denied")
                     > value(before, "bulkhead_drops_total", reason="Policy denied"))
    assert (value(after, "bulkhead_drops_total", reason="Policy denied")
            > value(before, "bulkhead_drops_total", reason="Policy denied"))

    assert curl(tie, server.ip, 80) == 0
    allowed = wait_for(url, lambda s: value(s, "bulkhead_forwarded_flows_total")
                       > value(after, "bulkhead_forwarded_flows_total"))
    assert (value(allowed, "bulkhead_forwarded_flows_total")
            > value(after, "bulkhead_forwarded_flows_total"))
    assert value(allowed, "bulkhead_flows_held") > 0

    # Map counts are read on the agent's datapath thread every 2 s.
    allowed = wait_for(url, lambda s: value(s, "bulkhead_map_entries", map="ipcache") >= 5
                       and value(s, "bulkhead_map_entries", map="ct") > 0, timeout=10)
    for name in ("endpoints", "ipcache", "policy", "ct"):
        assert value(allowed, "bulkhead_map_max_entries", map=name) > 0, name
        assert ("bulkhead_map_entries", (("map", name),)) in allowed, name
    # The server, both clients and both nodes' underlay IPs at least.
    assert value(allowed, "bulkhead_map_entries", map="ipcache") >= 5
    assert value(allowed, "bulkhead_map_entries", map="policy") > 0
    assert value(allowed, "bulkhead_map_entries", map="ct") > 0  # the allowed connection
    assert value(allowed, "bulkhead_map_entries", map="endpoints") == 1


def test_applied_revision_follows_what_the_agent_applied(lab: Cluster) -> None:
    """`agent status`, its JSON and bulkhead_applied_revision report the revision of the last
    change the agent applied (they stayed at the first snapshot's revision)."""
    lab.add_pod("probe-target", "n2", ["k8s:app=applied-revision"])
    policy = ("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n"
              "metadata: {name: applied-revision, namespace: default}\n"
              "spec:\n  endpointSelector: {matchLabels: {app: applied-revision}}\n"
              "  ingress: [{fromEndpoints: [{matchLabels: {app: nobody}}]}]\n")
    with grpc.insecure_channel(lab.cp_address) as channel:
        applied = policy_pb2_grpc.PolicyServiceStub(channel).Apply(
            policy_pb2.ApplyPoliciesRequest(yaml=policy), timeout=30)
        waited = subscription_pb2_grpc.SubscriptionAdminServiceStub(channel).WaitForRevision(
            subscription_pb2.WaitForRevisionRequest(revision=applied.revision,
                                                    identities=applied.affected_identities,
                                                    timeout_seconds=20), timeout=30)
    assert waited.converged and list(waited.nodes) == [lab.nodes["n2"].name], waited
    status = cli(lab, "n2", "status", "-o", "json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["applied_revision"] >= applied.revision
    text = cli(lab, "n2", "status").stdout
    shown = int(text.split(", revision ")[1].split()[0])
    assert shown >= applied.revision, text
    assert value(scrape(lab.nodes["n2"].metrics_url),
                 "bulkhead_applied_revision") >= applied.revision
