"""Benchmark: incremental policy resolution for one new identity vs a full recompute.

1,000 policies over 50 namespaces and 10,000 identities (DESIGN.md §9: incremental p99 ≤ 5 ms).
Most policies are namespaced allow rules between apps (namespace injection, ports), some are
clusterwide with entities, CIDR sets, deny rules and matchExpressions, so every selector kind
is in the selector cache. The last line is `policy incremental speedup: <full / incremental p50>`.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stats import pct

from controlplane.policy import Identity, PolicyRepository, parse_policies

NAMESPACES = 50
APPS = 20
POLICIES = 1000
IDENTITIES = 10_000
ADDITIONS = 1000
FULL_RUNS = 3
NS = "k8s:io.kubernetes.pod.namespace"


def policy_yaml(i: int) -> str:
    ns, app = f"ns{i % NAMESPACES}", (i // NAMESPACES) % APPS
    if i % 25 == 0:
        return f"""apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {{name: cw{i}}}
specs:
- endpointSelector: {{matchLabels: {{app: app{app}, {NS}: {ns}}}}}
  egress:
  - toEntities: [kube-apiserver, host]
  - toCIDRSet: [{{cidr: 10.{i % 200}.0.0/16, except: [10.{i % 200}.1.0/24]}}]
    toPorts: [{{ports: [{{port: "443", protocol: TCP}}]}}]
  egressDeny:
  - toEntities: [world]
    toPorts: [{{ports: [{{port: "25", protocol: TCP}}]}}]
- endpointSelector:
    matchExpressions: [{{key: app, operator: In, values: [app{app}]}},
                       {{key: {NS}, operator: Exists}},
                       {{key: tier, operator: NotIn, values: [legacy]}}]
  ingress:
  - fromEntities: [remote-node, health]
    toPorts: [{{ports: [{{port: "9090", protocol: TCP}}]}}]
"""
    return f"""apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: p{i}, namespace: {ns}}}
spec:
  endpointSelector: {{matchLabels: {{app: app{app}}}}}
  ingress:
  - fromEndpoints: [{{matchLabels: {{app: app{(app + 1) % APPS}}}}}]
    toPorts: [{{ports: [{{port: "8080", protocol: TCP}}, {{port: 9000, endPort: 9100}}]}}]
  - fromEndpoints: [{{matchLabels: {{{NS}: monitoring, app: prometheus}}}}]
  egress:
  - toEndpoints: [{{matchLabels: {{app: app{(app + 2) % APPS}}}}}]
  - toEndpoints: [{{matchLabels: {{{NS}: kube-system, k8s-app: kube-dns}}}}]
    toPorts: [{{ports: [{{port: "53", protocol: ANY}}]}}]
"""


def identity(number: int, rng: random.Random) -> Identity:
    ns = f"ns{rng.randrange(NAMESPACES)}"
    labels = {f"{NS}={ns}", f"k8s:app=app{rng.randrange(APPS)}",
              f"k8s:version=v{rng.randrange(5)}", f"k8s:pod-id={number}"}
    if rng.random() < 0.2:
        labels.add("k8s:tier=legacy")
    return Identity(number, frozenset(labels))


def main() -> None:
    rng = random.Random(7)
    started = time.perf_counter()
    policies = [p for i in range(POLICIES) for p in parse_policies(policy_yaml(i))]
    print(f"parsed {len(policies)} policies in {time.perf_counter() - started:.2f} s")

    repo = PolicyRepository(policy_map_max=1 << 30)
    for number in range(256, 256 + IDENTITIES):
        repo.add_identity(identity(number, rng))
    for extra in (Identity(256 + IDENTITIES, frozenset({f"{NS}=monitoring",
                                                        "k8s:app=prometheus"})),
                  Identity(257 + IDENTITIES, frozenset({f"{NS}=kube-system",
                                                        "k8s:k8s-app=kube-dns"}))):
        repo.add_identity(extra)
    started = time.perf_counter()
    repo.apply(policies, check=False)
    print(f"applied them to {IDENTITIES} identities in {time.perf_counter() - started:.2f} s")

    full_times = []
    for _ in range(FULL_RUNS):
        started = time.perf_counter()
        full = repo.full_recompute()
        full_times.append(time.perf_counter() - started)
    entries = sum(len(r.entries) for r in full.values())
    print(f"full resolution: {len(full)} identities, {entries} entries, "
          f"median {statistics.median(full_times) * 1000:.0f} ms over {FULL_RUNS} runs")

    samples = []
    touched = []
    first_new = 300_000
    for n in range(ADDITIONS):
        new = identity(first_new + n, rng)
        started = time.perf_counter()
        changed = repo.add_identity(new)
        samples.append(time.perf_counter() - started)
        touched.append(len(changed))
    p50, p99 = pct(samples, 0.50), pct(samples, 0.99)
    print(f"incremental add of one identity over {ADDITIONS}: p50 {p50 * 1000:.3f} ms, "
          f"p99 {p99 * 1000:.3f} ms, max {max(samples) * 1000:.3f} ms, "
          f"identities changed per add: median {statistics.median(touched):.0f}")
    print(f"target incremental p99 <= 5 ms: {'met' if p99 <= 0.005 else 'MISSED'}")
    assert repo.resolve_all() == repo.full_recompute(), "incremental state diverged"
    print(f"policy incremental speedup: {statistics.median(full_times) / p50:.0f}")


if __name__ == "__main__":
    main()
