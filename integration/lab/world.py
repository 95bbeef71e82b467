"""The lab's "world": a namespace on the underlay standing for the internet, with a DNS
server for a few names outside the cluster and web servers behind them, so FQDN policies
(`toFQDNs`, `rules.dns`) are tested end to end without leaving the machine.

    192.0.2.200  the world's DNS server (UDP and TCP 53): the agents' --dns-upstream
    192.0.2.201  api.world.test      192.0.2.202  other.world.test     192.0.2.203 www.world.test
    192.0.2.100-199  b0.bench.world.test ... b99.bench.world.test (bench/dns.py)
    192.0.2.100-139  many.world.test: 40 A records, an answer too large for plain UDP

Every address serves HTTP on port 80 answering `world`.  The world routes each node's pod
CIDR to that node's underlay address (pods talk to it with their own addresses, no NAT).
The DNS answers' TTL is the number in `TTL_FILE` of the lab directory, so a
test can shorten it while the lab runs (default 300).
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from collections.abc import Mapping

from . import netns, processes
from .state import LabState

UNDERLAY = ipaddress.IPv4Network("192.0.2.0/24")
DNS_IP = str(UNDERLAY[200])
NAMES: dict[str, str] = {
    "api.world.test": str(UNDERLAY[201]),
    "other.world.test": str(UNDERLAY[202]),
    "www.world.test": str(UNDERLAY[203]),
}
WEB_IP = NAMES["www.world.test"]
"""The world's web server for `connectivity test` (the lab publishes it: EXTERNAL_IP_FILE)."""
BENCH_NAMES: dict[str, str] = {f"b{i}.bench.world.test": str(UNDERLAY[100 + i])
                               for i in range(100)}
"""bench/dns.py's fresh names: 192.0.2.100-199, one address each (all serve HTTP too)."""
MANY_NAME = "many.world.test"
MANY_IPS = [str(UNDERLAY[100 + i]) for i in range(40)]
"""40 A records (~690 bytes): over UDP the world answers truncated (TC), over TCP whole."""
TTL_FILE = "world-ttl"
DEFAULT_TTL = 300
PORT = "pw"


def netns_name(state: LabState) -> str:
    return f"{state.prefix}world"


def up(state: LabState) -> list[int]:
    """Builds the namespace (idempotent) and starts its servers; returns their pids."""
    ns = netns_name(state)
    netns.attach_node(state.underlay_netns, ns, PORT, f"{DNS_IP}/24")
    present = netns.ip("-4", "addr", "show", "dev", "ul0", netns=ns)
    missing = [ip for ip in (*NAMES.values(), *BENCH_NAMES.values()) if f"{ip}/" not in present]
    if missing:
        subprocess.run(["ip", "-n", ns, "-batch", "-"], check=True, capture_output=True,
                       text=True, input="".join(f"addr add {ip}/24 dev ul0\n"
                                                for ip in missing))
    ttl_file = state.directory / TTL_FILE
    if not ttl_file.exists():
        ttl_file.write_text(f"{DEFAULT_TTL}\n")
    records = [f"--record={name}={ip}" for name, ip in {**NAMES, **BENCH_NAMES}.items()]
    records.append(f"--record={MANY_NAME}={','.join(MANY_IPS)}")
    dns_pid = processes.start_ready(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "integration.lab.worlddns",
         *records, "--listen", f"{DNS_IP}:53", "--ttl-file", str(ttl_file)],
        state.directory / "world-dns.log")
    web_pid = processes.start_ready(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "nodeagent.pods.server",
         "world", "--ports", "80"], state.directory / "world-web.log")
    return [dns_pid, web_pid]


def routes(state: LabState, pod_cidrs: Mapping[str, str]) -> None:
    """Each node's pod CIDR via that node's underlay address."""
    ns = netns_name(state)
    for name, cidr in pod_cidrs.items():
        node = state.nodes.get(name)
        if node is not None and cidr:
            netns.ip("route", "replace", cidr, "via", node.underlay_ip, netns=ns)


def set_ttl(state: LabState, ttl: int) -> None:
    (state.directory / TTL_FILE).write_text(f"{ttl}\n")
