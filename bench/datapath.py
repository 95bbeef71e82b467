"""Benchmark: cross-node TCP throughput with the Bulkhead programs vs plain VXLAN routing.

(a) baseline: two node namespaces, pods on veths (same plumbing as the
datapath), plain kernel routing over an ordinary VXLAN device (UDP 8472), no
BPF programs.  (b) the same pods with the Bulkhead datapath and an allowing
ingress policy on the server.  iperf3 runs pod -> pod across nodes for each.
Everything lives in uniquely named namespaces and pin directories, removed at
the end.  Last line: ``datapath throughput ratio: <b/a>`` (target >= 0.90).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyroute2 import IPRoute, netns

from nodeagent.datapath import Datapath, Direction, EndpointSpec, IpcacheEntry, PolicyEntry
from nodeagent.datapath.loader import remove_pins
from nodeagent.datapath.netlink import ensure_endpoint_link

SECONDS = 4


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def make_nodes(tag: str, created: list[str]) -> tuple[str, str]:
    n1, n2 = f"bhb{tag}-n1", f"bhb{tag}-n2"
    for ns in (n1, n2):
        netns.create(ns)
        created.append(ns)
    with IPRoute(netns=n1) as ipr:
        ipr.link("add", ifname="ul", kind="veth", peer={"ifname": "ul", "net_ns_fd": n2})
    for i, ns in enumerate((n1, n2), start=1):
        sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"192.168.78.{i}/24", "dev", "ul")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "ul", "up")
        sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
    return n1, n2


def make_pod(name: str, created: list[str]) -> str:
    netns.create(name)
    created.append(name)
    return name


def iperf(client: str, server: str, server_ip: str) -> float:
    srv = subprocess.Popen(
        ["ip", "netns", "exec", server, "iperf3", "-s", "-1"], stdout=subprocess.DEVNULL
    )
    try:
        time.sleep(0.5)
        out = sh("ip", "netns", "exec", client, "iperf3", "-c", server_ip, "-t", str(SECONDS),
                 "-J")
        return float(json.loads(out)["end"]["sum_received"]["bits_per_second"])
    finally:
        srv.kill()
        srv.wait()


def baseline(tag: str, created: list[str]) -> float:
    n1, n2 = make_nodes(tag + "a", created)
    c, s = make_pod(f"bhb{tag}a-c", created), make_pod(f"bhb{tag}a-s", created)
    for node, pod, ip in ((n1, c, "10.1.0.10"), (n2, s, "10.2.0.10")):
        with IPRoute(netns=node) as ipr:
            ensure_endpoint_link(ipr, "lxc10", pod, "eth0", ip, 1450)
    for i, (node, other, remote_net) in enumerate(
        ((n1, "192.168.78.2", "10.2.0.0/24"), (n2, "192.168.78.1", "10.1.0.0/24")), start=1
    ):
        x = ("ip", "netns", "exec", node)
        sh(*x, "ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "remote", other,
           "dstport", "8472")
        sh(*x, "ip", "addr", "add", f"172.30.0.{i}/24", "dev", "vx0")
        sh(*x, "ip", "link", "set", "vx0", "up")
        sh(*x, "ip", "route", "add", remote_net, "via", f"172.30.0.{3 - i}")
        sh(*x, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    return iperf(c, s, "10.2.0.10")


def with_bulkhead(tag: str, created: list[str], dps: list[Datapath]) -> float:
    n1, n2 = make_nodes(tag + "b", created)
    c, s = make_pod(f"bhb{tag}b-c", created), make_pod(f"bhb{tag}b-s", created)
    ipcache = [
        IpcacheEntry("10.1.0.10/32", 301, "192.168.78.1"),
        IpcacheEntry("10.2.0.10/32", 300, "192.168.78.2"),
    ]
    for i, (node, pod, ip, ident) in enumerate(
        ((n1, c, "10.1.0.10", 301), (n2, s, "10.2.0.10", 300)), start=1
    ):
        dp = Datapath(f"bench{tag}n{i}", netns=node)
        dps.append(dp)
        dp.setup_node(f"192.168.78.{i}")
        dp.add_endpoint(EndpointSpec(10, ip, ident, pod, "lxc10"))
        dp.sync_ipcache(ipcache)
    dps[1].sync_policy(
        10, [PolicyEntry(Direction.INGRESS, 301, 6)], ingress_enforced=True, egress_enforced=False
    )
    return iperf(c, s, "10.2.0.10")


def main() -> None:
    tag = secrets.token_hex(2)
    created: list[str] = []
    dps: list[Datapath] = []
    try:
        a = baseline(tag, created)
        b = with_bulkhead(tag, created, dps)
    finally:
        for dp in dps:
            dp.teardown()
        for i in (1, 2):
            remove_pins(f"bench{tag}n{i}")
        for ns in reversed(created):
            netns.remove(ns)
    print(f"(a) plain VXLAN routing, no programs: {a / 1e9:.2f} Gbit/s")
    print(f"(b) Bulkhead datapath, allowing policy: {b / 1e9:.2f} Gbit/s")
    print(f"datapath throughput ratio: {b / a:.2f}")


if __name__ == "__main__":
    main()
