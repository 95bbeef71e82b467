"""DNS benchmark (issue 16's targets): queries/s through the node's DNS proxy against the same
queries straight to the resolver it forwards to, in the same run (target >= 0.5), and the
time from a DNS answer to the first connection the datapath lets through to the answered
address (p99, target <= 5 ms).

A one-node lab with its world (integration/lab/world.py); a pod under a policy with DNS rules
(`**.world.test`) and toFQDNs (`api.world.test`, `*.bench.world.test`).
(a) the resolver: the world's DNS server, asked from the node's namespace;
(b) the proxy: the same client in the pod, asking its node's DNS address (rules.dns checked,
    forwarded, the answer's address learnt; the name is known after the first answer);
(c) answer -> first packet: 100 names never asked before, each answered with its own address:
    every answer writes a new identity, ipcache and policy entries before it is sent; the
    client then connects to the address (50 ms connect timeout, retried) and the time from
    the answer to the first connection that completes is recorded.
Needs root and the datapath.  The last line is
`dns proxy query rate ratio: R; answer-to-first-packet p99: P ms`.

Usage: python bench/dns.py [--seconds S] [--concurrency C]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # run as a script, bench/ is sys.path[0]; the project is not

from integration.lab import world  # noqa: E402
from integration.lab.lab import Lab  # noqa: E402

HERE = Path(__file__).resolve().parent
POLICY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bench-dns, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: dnsbench}}
  egress:
  - toEntities: [host]
    toPorts:
    - ports: [{port: "53", protocol: ANY}]
      rules:
        dns: [{matchPattern: "**.world.test"}]
  - toFQDNs: [{matchName: api.world.test}, {matchPattern: "*.bench.world.test"}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
"""


def say(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def client(netns: str, *args: str, timeout: float = 300) -> Any:
    # -P: not bench/ first on the path, where this file (dns.py) would shadow dnspython.
    out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-P",
                          str(HERE / "dnsclient.py"), *args],
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"dnsclient {' '.join(args[:2])} in {netns} failed: "
                           f"{out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python bench/dns.py")
    parser.add_argument("--seconds", type=float, default=5.0, help="per rate measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="queries in flight")
    args = parser.parse_args()
    state_dir = tempfile.mkdtemp(prefix="bench-dns-")
    os.environ["BULKHEAD_STATE_DIR"] = state_dir
    lab = Lab(f"d{uuid.uuid4().hex[:5]}", say=say)
    try:
        state = lab.up(1, with_world=True)
        pod = lab.pod_create("dnsbench", "n1", "default", ["app=dnsbench"])
        policy = Path(state_dir) / "policy.yaml"
        policy.write_text(POLICY)
        subprocess.run([str(Path(sys.executable).parent / "bulkhead"), "--server",
                        state.controlplane, "policy", "apply", "-f", str(policy), "--wait",
                        "--timeout", "60"], check=True, capture_output=True, timeout=90)
        node_ns = state.nodes["n1"].netns
        name, secs, conc = "api.world.test.", str(args.seconds), str(args.concurrency)
        client(pod.netns, "qps", "169.254.1.1", name, "1", conc)   # warm-up (learns the name)
        say(f"(a) straight to the resolver {world.DNS_IP}, {conc} in flight")
        a = client(node_ns, "qps", world.DNS_IP, name, secs, conc)
        say(f"(b) through the DNS proxy 169.254.1.1, {conc} in flight")
        b = client(pod.netns, "qps", "169.254.1.1", name, secs, conc)
        for label, r in (("resolver", a), ("proxy", b)):
            say(f"{label}: {r['qps']:.0f} queries/s, p50 {r['p50_ms']:.2f} ms, "
                f"p99 {r['p99_ms']:.2f} ms, failed {r['failed']}")
        say("(c) 100 fresh names: answer -> first allowed connection")
        c = client(pod.netns, "first", "169.254.1.1", *world.BENCH_NAMES)
        first, query = c["answer_to_first_ms"], c["query_ms"]
        ratio = b["qps"] / a["qps"]
        print(f"resolver {a['qps']:.0f} q/s, proxy {b['qps']:.0f} q/s (p50 "
              f"{a['p50_ms']:.2f} -> {b['p50_ms']:.2f} ms); fresh name: query p50 "
              f"{percentile(query, 0.5):.2f} ms p99 {percentile(query, 0.99):.2f} ms, "
              f"answer -> first packet p50 {percentile(first, 0.5):.2f} ms")
        print(f"dns proxy query rate ratio: {ratio:.2f}; answer-to-first-packet p99: "
              f"{percentile(first, 0.99):.2f} ms")
    finally:
        lab.down()


if __name__ == "__main__":
    main()
