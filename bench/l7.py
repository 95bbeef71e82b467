"""L7 HTTP benchmark: keep-alive request rate and latency through an L7 allow rule (the node's
proxy) against an L3/L4-only allow on the same path, in the same run (issue 12's target:
(b)/(a) >= 0.5 at 8 clients, +<= 1 ms p50 at 1 client).

Two lab nodes as network namespaces (tests/datapath/topology), a client on n1, an HTTP/1.1
server on n2 (across nodes); (a) an L3/L4 ingress allow, (b) the same allow redirected to
n2's proxy with an HTTP rule that passes the requests.  Needs root and the datapath.  The last
line is `l7 request rate ratio @8: <b/a>`.

Usage: python bench/l7.py [--seconds S]   (as every benchmark: `make bench` runs it too)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # run as a script, bench/ is sys.path[0]; the project is not

from bulkhead.httprules import HttpRule  # noqa: E402
from nodeagent.datapath import PolicyEntry  # noqa: E402
from nodeagent.datapath.layout import Direction  # noqa: E402
from nodeagent.datapath.loader import DEFAULT_PIN_ROOT  # noqa: E402
from nodeagent.proxy.rules import INGRESS, L7Entry  # noqa: E402
from nodeagent.proxy.supervisor import ProxySupervisor  # noqa: E402
from tests.datapath import topology  # noqa: E402

HERE = Path(__file__).resolve().parent
PORT = 8000
PROXY_PORT = 15001
CLIENTS = (1, 8, 32)


def say(msg: str) -> None:
    print(f"==> {msg}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(pod: topology.Pod, ip: str, clients: int, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        ["ip", "netns", "exec", pod.ns, sys.executable, str(HERE / "httpload.py"), ip,
         str(PORT), str(clients), str(seconds), "/bench"],
        capture_output=True, text=True, timeout=seconds + 60, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    if result["errors"] or not result["requests"]:
        raise RuntimeError(f"the load saw errors: {result}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.l7")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    args = parser.parse_args()
    c = topology.build(DEFAULT_PIN_ROOT)
    server = None
    sup = None
    try:
        tf, ds = c.pods["tiefighter"], c.pods["deathstar2"]
        server = subprocess.Popen(
            ["ip", "netns", "exec", ds.ns, sys.executable,
             str(HERE.parent / "tests" / "datapath" / "httpserve.py"), "deathstar2", str(PORT)],
            stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        sup = ProxySupervisor(Path(tempfile.mkdtemp()) / "proxy.sock", netns=c.nodes["n2"].ns,
                              port=PROXY_PORT)
        sup.start()
        sup.set_entries([L7Entry(ds.ip, INGRESS, tf.identity, PORT, PORT,
                                 (HttpRule(method="GET", path="/bench"),))])
        results: dict[str, dict[int, dict[str, Any]]] = {"a": {}, "b": {}}
        cpu: dict[int, float] = {}
        for case, proxy_port in (("a", 0), ("b", PROXY_PORT)):
            c.dp("n2").sync_policy(ds.ep_id, [PolicyEntry(Direction.INGRESS, tf.identity, 6,
                                                          PORT, PORT, proxy_port=proxy_port)],
                                   ingress_enforced=True, egress_enforced=False)
            for n in CLIENTS:
                before = cpu_seconds(sup.pid())
                r = load(tf, ds.ip, n, args.seconds)
                if case == "b":
                    cpu[n] = (cpu_seconds(sup.pid()) - before) / r["requests"]
                results[case][n] = r
                say(f"({case}) {'L7 rule' if case == 'b' else 'L3/L4 rule'}, {n:>2} clients: "
                    f"{r['rps']:8.0f} req/s  p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms")
        for n in CLIENTS:
            a, b = results["a"][n], results["b"][n]
            print(f"clients {n:>2}: L3/L4 {a['rps']:.0f} req/s, L7 {b['rps']:.0f} req/s, "
                  f"ratio {b['rps'] / a['rps']:.2f}; p50 +{b['p50_ms'] - a['p50_ms']:.3f} ms, "
                  f"p99 {a['p99_ms']:.3f} -> {b['p99_ms']:.3f} ms; proxy CPU "
                  f"{cpu[n] * 1e6:.0f} us/request")
        print(f"l7 request rate ratio @8: {results['b'][8]['rps'] / results['a'][8]['rps']:.2f}")
    finally:
        if sup is not None:
            sup.stop()
        if server is not None:
            server.kill()
            server.wait(timeout=5)
        topology.destroy(c, DEFAULT_PIN_ROOT)


if __name__ == "__main__":
    main()
