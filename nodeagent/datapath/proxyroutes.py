"""The node's routing for the L7 proxy: ip rules on the proxy marks, two tables, one sysctl.

The tc programs mark a redirected connection's packets (``MARK_TO_PROXY_*``,
bulkhead.h) and leave them to the node's stack; these rules make that stack
deliver them locally, to the proxy's transparent sockets, whatever their
destination address (Cilium's table 2004).  Everything the proxy sends carries
``MARK_PROXY_OUT``: local pods are reached by the main table's /32 routes, any
other pod through the VXLAN device, whose ``to_overlay`` program sets the tunnel
key (Cilium's table 2005).  A SYN-ACK of a proxied connection is sent with the
to-proxy mark of its SYN (``tcp_fwmark_accept``, which hands the proxy that mark
and so the peer's identity), so locally sent packets with that mark are routed
like the proxy's own.  All of it is idempotent.
"""

from __future__ import annotations

import subprocess
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from nodeagent.datapath.layout import (
    MARK_PROXY_MASK,
    MARK_PROXY_OUT,
    MARK_TO_PROXY_EGRESS_LEARNT,
    MARK_TO_PROXY_INGRESS,
    MARK_TO_PROXY_SELECT,
)

TO_PROXY_TABLE = 2004
FROM_PROXY_TABLE = 2005
MAIN_TABLE = 254
RULE_PRIORITY = 90
IFF_NOARP = 0x80
_EEXIST = 17


def _rules() -> list[dict[str, Any]]:
    out = MARK_PROXY_OUT, MARK_PROXY_MASK
    synack = MARK_TO_PROXY_INGRESS, MARK_TO_PROXY_SELECT
    learnt = MARK_TO_PROXY_EGRESS_LEARNT, MARK_PROXY_MASK
    main = {"table": MAIN_TABLE, "suppress_prefixlen": 0}
    overlay = {"table": FROM_PROXY_TABLE}
    rules = [
        (out, {}, main),
        (synack, {"iifname": "lo"}, main),
        (out, {}, overlay),
        (synack, {"iifname": "lo"}, overlay),
        (synack, {}, {"table": TO_PROXY_TABLE}),
        # The learnt-address egress mark, routed the same way (rules of their own after the
        # first five, so a node that has those gets these added, never changed).
        (learnt, {"iifname": "lo"}, main),
        (learnt, {"iifname": "lo"}, overlay),
        (learnt, {}, {"table": TO_PROXY_TABLE}),
    ]
    return [
        {"priority": RULE_PRIORITY + i, "fwmark": mark, "fwmask": mask, **match, **action}
        for i, ((mark, mask), match, action) in enumerate(rules)
    ]


def ensure(ipr: Any, netns: str | None, vxlan_index: int) -> None:
    """Rules, tables and the sysctl in the node's namespace (``ipr`` is there)."""
    ipr.link("set", index=vxlan_index, flags=IFF_NOARP, change=IFF_NOARP)
    lo = ipr.link_lookup(ifname="lo")[0]
    ipr.route("replace", dst="0.0.0.0/0", type="local", oif=lo, table=TO_PROXY_TABLE,
              scope=254)
    ipr.route("replace", dst="0.0.0.0/0", oif=vxlan_index, table=FROM_PROXY_TABLE, scope=253)
    existing = {r.get("priority") for r in ipr.get_rules(family=2)}
    for rule in _rules():
        if rule["priority"] in existing:
            continue
        try:
            ipr.rule("add", family=2, **rule)
        except NetlinkError as e:
            if e.code != _EEXIST:
                raise
    set_sysctl(netns, "net.ipv4.tcp_fwmark_accept", "1")


def set_sysctl(netns: str | None, key: str, value: str) -> None:
    """A namespaced sysctl, set inside ``netns`` (None: here)."""
    if netns is None:
        path = "/proc/sys/" + key.replace(".", "/")
        with open(path, "w") as f:
            f.write(value)
        return
    cmd = ["sysctl", "-qw", f"{key}={value}"]
    if netns.startswith("/"):
        cmd = ["nsenter", f"--net={netns}", "--", *cmd]
    else:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    subprocess.run(cmd, check=True, capture_output=True, timeout=10)
