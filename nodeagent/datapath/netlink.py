"""Links, addresses, routes, neighbours and tc filters, via pyroute2 (sync API).

Everything here is idempotent: creating what exists reuses it, and tc filters
are installed with ``replace`` at a fixed priority and handle, so attaching
twice (or a restarted agent attaching its freshly loaded programs) swaps the
program atomically instead of stacking a second filter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

GATEWAY_IP = "169.254.1.1"
"""Pods route everything via this link-local gateway, answered by a static neighbour."""

TC_INGRESS = "ffff:fff2"
TC_EGRESS = "ffff:fff3"
_PARENTS = {"ingress": TC_INGRESS, "egress": TC_EGRESS}
_PARENT_IDS = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}
FILTER_PRIO = 1
FILTER_HANDLE = 1
NUD_PERMANENT = 0x80
SCOPE_LINK = 253
VXLAN_PORT = 8472

_EEXIST = 17
_ENOENT = 2
_ENODEV = 19


def open_ns(netns: str | None) -> Any:
    """An IPRoute in a namespace (name under /var/run/netns, or a path), or here."""
    return IPRoute(netns=netns) if netns else IPRoute()


def ns_path(netns: str) -> str:
    return netns if netns.startswith("/") else f"/var/run/netns/{netns}"


def link_index(ipr: Any, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def link_mac(ipr: Any, index: int) -> str:
    return str(ipr.link("get", index=index)[0].get_attr("IFLA_ADDRESS"))


def ensure_clsact(ipr: Any, index: int) -> None:
    try:
        ipr.tc("add", "clsact", index)
    except NetlinkError as e:
        if e.code != _EEXIST:
            raise


def attach(ipr: Any, index: int, hook: str, prog_fd: int, prog_name: str) -> None:
    """Install (or atomically replace) our direct-action filter on a hook."""
    ensure_clsact(ipr, index)
    ipr.tc(
        "replace-filter",
        "bpf",
        index,
        f":{FILTER_HANDLE}",
        fd=prog_fd,
        name=prog_name,
        parent=_PARENTS[hook],
        classid=1,
        direct_action=True,
        prio=FILTER_PRIO,
    )


def filters(ipr: Any, index: int, hook: str) -> list[str]:
    """Names of the bpf filters (with a program) on a hook, for checks and dumps."""
    out = []
    for msg in ipr.get_filters(index, parent=_PARENT_IDS[hook]):
        opts = msg.get_attr("TCA_OPTIONS")
        name = opts.get_attr("TCA_BPF_NAME") if opts is not None else None
        if name:
            out.append(str(name))
    return out


def ensure_vxlan(ipr: Any, ifname: str, port: int = VXLAN_PORT, mtu: int | None = None) -> int:
    """A VXLAN device in external (collect-metadata) mode; returns its ifindex."""
    index = link_index(ipr, ifname)
    if index is None:
        ipr.link(
            "add",
            ifname=ifname,
            kind="vxlan",
            vxlan_collect_metadata=1,
            vxlan_port=port,
            vxlan_learning=0,
        )
        index = link_index(ipr, ifname)
        assert index is not None
    settings: dict[str, Any] = {"state": "up"}
    if mtu:
        settings["mtu"] = mtu
    ipr.link("set", index=index, **settings)
    return index


@dataclass(frozen=True)
class EndpointLink:
    host_index: int
    host_mac: str
    pod_mac: str


def ensure_endpoint_link(
    node: Any, host_ifname: str, netns: str, pod_ifname: str, ip: str, mtu: int
) -> EndpointLink:
    """A veth from the node namespace into the pod's, fully plumbed.

    Pod side: the address as /32, a link route to the gateway, a default route
    via it, and a permanent neighbour entry for the gateway with the host-side
    MAC (so the pod never needs an ARP answer).  Node side: a /32 route and a
    permanent neighbour for the pod, so the host itself can reach it.
    """
    if len(host_ifname) > 15:
        raise ValueError(f"interface name {host_ifname!r} is longer than 15 characters")
    if not os.path.exists(ns_path(netns)):
        raise FileNotFoundError(f"network namespace {netns!r} does not exist")
    host_index = link_index(node, host_ifname)
    with open_ns(netns) as pod:
        if host_index is None:
            fd = os.open(ns_path(netns), os.O_RDONLY)
            try:
                node.link(
                    "add",
                    ifname=host_ifname,
                    kind="veth",
                    peer={"ifname": pod_ifname, "net_ns_fd": fd},
                )
            finally:
                os.close(fd)
            host_index = link_index(node, host_ifname)
            assert host_index is not None
        pod_index = link_index(pod, pod_ifname)
        if pod_index is None:
            raise RuntimeError(f"{host_ifname} exists but {pod_ifname} is not in {netns}")
        node.link("set", index=host_index, mtu=mtu, state="up")
        host_mac = link_mac(node, host_index)
        pod_mac = link_mac(pod, pod_index)

        lo = link_index(pod, "lo")
        if lo is not None:
            pod.link("set", index=lo, state="up")
        pod.link("set", index=pod_index, mtu=mtu, state="up")
        addrs = {a.get_attr("IFA_ADDRESS") for a in pod.get_addr(index=pod_index, family=2)}
        if ip not in addrs:
            pod.addr("add", index=pod_index, address=ip, prefixlen=32)
        pod.route("replace", dst=f"{GATEWAY_IP}/32", oif=pod_index, scope=SCOPE_LINK)
        pod.route("replace", dst="0.0.0.0/0", gateway=GATEWAY_IP, oif=pod_index)
        pod.neigh(
            "replace", dst=GATEWAY_IP, lladdr=host_mac, ifindex=pod_index, state=NUD_PERMANENT
        )
    node.route("replace", dst=f"{ip}/32", oif=host_index, scope=SCOPE_LINK)
    node.neigh("replace", dst=ip, lladdr=pod_mac, ifindex=host_index, state=NUD_PERMANENT)
    return EndpointLink(host_index, host_mac, pod_mac)


def delete_link(ipr: Any, ifname: str) -> bool:
    """Delete a link (a veth takes its peer, routes and neighbours with it)."""
    index = link_index(ipr, ifname)
    if index is None:
        return False
    try:
        ipr.link("del", index=index)
    except NetlinkError as e:
        if e.code not in (_ENODEV, _ENOENT):
            raise
        return False
    return True


def link_name(ipr: Any, index: int) -> str | None:
    try:
        return str(ipr.link("get", index=index)[0].get_attr("IFLA_IFNAME"))
    except NetlinkError:
        return None
