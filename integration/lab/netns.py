"""Namespaces and links of a lab, with iproute2 (the commands an operator would type).

Nothing is added to the host's own namespace: the underlay is a bridge inside a namespace of
its own, and every node and pod namespace hangs off it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence

# The namespace primitives are shared with the agent's connectivity-test pods.
from nodeagent.pods.netns import NetError, add_netns, delete_netns, ip, namespaces, pids_in

__all__ = ["NetError", "add_netns", "delete_netns", "ip", "namespaces", "pids_in"]


def sysctl(netns: str, key: str, value: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw", f"{key}={value}"],
                   check=True, capture_output=True)


def build_underlay(underlay_ns: str, gateway_cidr: str) -> None:
    add_netns(underlay_ns)
    if "br0" not in ip("link", "show", netns=underlay_ns, check=False):
        ip("link", "add", "br0", "type", "bridge", netns=underlay_ns)
        ip("addr", "add", gateway_cidr, "dev", "br0", netns=underlay_ns)
    ip("link", "set", "br0", "up", netns=underlay_ns)


def attach_node(underlay_ns: str, node_ns: str, port: str, address_cidr: str) -> None:
    """A veth from the node (`ul0`) to a port of the underlay bridge."""
    add_netns(node_ns)
    if "ul0" not in ip("link", "show", netns=node_ns, check=False):
        ip("link", "add", "ul0", "type", "veth", "peer", "name", port, "netns", underlay_ns,
           netns=node_ns)
        ip("addr", "add", address_cidr, "dev", "ul0", netns=node_ns)
        ip("link", "set", port, "master", "br0", netns=underlay_ns)
    ip("link", "set", "ul0", "up", netns=node_ns)
    ip("link", "set", port, "up", netns=underlay_ns)
    sysctl(node_ns, "net.ipv4.ip_forward", "1")


# -- plain kernel routing over VXLAN: the `--datapath=none` baseline ---------------------------

def plain_vxlan(node_ns: str, underlay_ip: str, overlay_ip: str, peers: Sequence[str]) -> None:
    """vxlan0 (VNI 1, UDP 8472) with a flood entry to every other node."""
    if "vxlan0" not in ip("link", "show", netns=node_ns, check=False):
        ip("link", "add", "vxlan0", "type", "vxlan", "id", "1", "dstport", "8472", "local",
           underlay_ip, "dev", "ul0", "nolearning", netns=node_ns)
        ip("addr", "add", f"{overlay_ip}/24", "dev", "vxlan0", netns=node_ns)
        for peer in peers:
            ip("link", "set", "vxlan0", "up", netns=node_ns)
            subprocess.run(["bridge", "-n", node_ns, "fdb", "append", "00:00:00:00:00:00",
                            "dev", "vxlan0", "dst", peer], check=True, capture_output=True)
    ip("link", "set", "vxlan0", "up", netns=node_ns)


def plain_pod(node_ns: str, pod_ns: str, host_if: str, pod_ip: str) -> None:
    """A veth into the pod, /32 address, default route via a link-local gateway with a
    permanent neighbour entry (the same shape as Bulkhead's own endpoints)."""
    ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", pod_ns,
       netns=node_ns)
    ip("link", "set", host_if, "up", netns=node_ns)
    sysctl(node_ns, f"net.ipv4.conf.{host_if}.proxy_arp", "1")
    ip("route", "add", f"{pod_ip}/32", "dev", host_if, netns=node_ns)
    ip("addr", "add", f"{pod_ip}/32", "dev", "eth0", netns=pod_ns)
    ip("link", "set", "eth0", "up", netns=pod_ns)
    ip("route", "add", "169.254.1.1", "dev", "eth0", "scope", "link", netns=pod_ns)
    mac = ip("-j", "link", "show", host_if, netns=node_ns)
    lladdr = json.loads(mac)[0]["address"]
    ip("neigh", "replace", "169.254.1.1", "lladdr", lladdr, "dev", "eth0", "nud", "permanent",
       netns=pod_ns)
    ip("route", "add", "default", "via", "169.254.1.1", "dev", "eth0", netns=pod_ns)


def plain_route(node_ns: str, cidr: str, via: str) -> None:
    ip("route", "replace", cidr, "via", via, "dev", "vxlan0", netns=node_ns)
