"""What this node's BPF maps should hold, computed from what the agent received.

Pure functions (no kernel, no I/O) so the translation rules live in one place:
- an ipcache entry of one of this node's pods has no tunnel (local delivery);
- a pod of another node is behind that node's tunnel endpoint (its underlay IP);
- another node's underlay IP is the remote-node identity (6); this node's own underlay IP is
  the host identity, which the datapath adds itself;
- a policy entry becomes the datapath's PolicyEntry (peer 0 = any, protocol 0 = any).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bulkhead.reserved import ID_REMOTE_NODE
from bulkhead.v1 import subscription_pb2 as pb
from bulkhead.v1 import types_pb2
from nodeagent.datapath import Direction, IpcacheEntry, PolicyEntry


def tunnel_of(entry: types_pb2.IPCacheEntry, node: str,
              nodes: Mapping[str, types_pb2.Node]) -> str | None:
    """The underlay IP that traffic to ``entry`` is encapsulated to (None: this node)."""
    if entry.node == node and (not entry.cluster or _same_cluster(entry, nodes.get(node))):
        return None
    if entry.tunnel.ip:
        return entry.tunnel.ip
    owner = nodes.get(entry.node)
    return owner.underlay_ip if owner is not None and owner.underlay_ip else None


def _same_cluster(entry: types_pb2.IPCacheEntry, me: types_pb2.Node | None) -> bool:
    return me is None or not me.cluster or me.cluster == entry.cluster


def ipcache_entry(entry: types_pb2.IPCacheEntry, node: str,
                  nodes: Mapping[str, types_pb2.Node]) -> IpcacheEntry:
    return IpcacheEntry(entry.prefix, entry.identity, tunnel_of(entry, node, nodes))


def node_entries(node: str, nodes: Iterable[types_pb2.Node]) -> list[IpcacheEntry]:
    """Other nodes' underlay IPs as remote-node."""
    return [IpcacheEntry(f"{n.underlay_ip}/32", ID_REMOTE_NODE)
            for n in nodes if n.name != node and n.underlay_ip]


def ipcache(node: str, nodes: Mapping[str, types_pb2.Node],
            entries: Iterable[types_pb2.IPCacheEntry]) -> list[IpcacheEntry]:
    """The whole ipcache of ``node`` (without its own host entry)."""
    out = {e.prefix: e for e in node_entries(node, nodes.values())}
    for entry in entries:  # a pod prefix wins over a node address that collides with it
        out[entry.prefix] = ipcache_entry(entry, node, nodes)
    return list(out.values())


def policy_entries(policy: pb.IdentityPolicy) -> list[PolicyEntry]:
    return [
        PolicyEntry(
            direction=Direction.EGRESS if e.direction == pb.PolicyEntry.EGRESS
            else Direction.INGRESS,
            peer=e.peer,
            protocol=e.protocol,
            port_lo=e.port_lo,
            port_hi=e.port_hi,
            deny=e.verdict == pb.PolicyEntry.DENY,
        )
        for e in policy.entries
    ]
