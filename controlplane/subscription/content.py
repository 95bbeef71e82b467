"""What agents receive, derived from cache keys: nodes, ipcache entries, identities (all
agents), the same kinds of remote clusters mirrored under `clustermesh/mirror/<remote>/`
(controlplane/clustermesh/syncer.py), resolved policy and the node's host policy (per node).
Everything else under the prefix is not content."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from bulkhead import httprules
from bulkhead.httprules import HttpRule
from bulkhead.v1 import subscription_pb2 as pb
from controlplane.policy.hosts import HostPolicy
from controlplane.records import messages
from controlplane.records.codec import (
    IdentityRecord,
    IPCacheEntry,
    MeshStatusRecord,
    Node,
    mirrored_kind,
)
from controlplane.store.etcd import KV
from controlplane.store.keys import Keys

Kind = Literal["node", "ipcache", "identity", "remote"]
"""`remote`: a connected remote cluster's sync status (its syncer's `clustermesh/status/<name>`),
sent as a RemoteClusterSync for the agents' sync grace (nodeagent/meshgrace.py)."""
_RECORD: dict[str, type[Node] | type[IPCacheEntry] | type[IdentityRecord]] = {
    "node": Node, "ipcache": IPCacheEntry, "identity": IdentityRecord}

_MIRRORED: dict[str, Kind] = {"nodes/": "node", "ipcache/": "ipcache",
                              "identities/id/": "identity"}


@dataclass(frozen=True, slots=True)
class PolicyEntryView:
    """One resolved entry, as the policy engine reports it (direction/verdict as strings)."""

    direction: str      # "ingress" | "egress"
    peer: int
    protocol: int
    port_lo: int
    port_hi: int
    verdict: str        # "allow" | "deny"
    http: tuple[HttpRule, ...] = ()  # non-empty: an L7 (HTTP) entry, its rules sorted


@dataclass(frozen=True, slots=True)
class ResolvedView:
    ingress_enforced: bool
    egress_enforced: bool
    entries: tuple[PolicyEntryView, ...]
    dns: tuple[str, ...] = ()
    """`rules.dns` patterns (ResolvedPolicy.dns)"""


class Classifier:
    """Maps a cache key to the kind of shared object it holds (None: not content)."""

    def __init__(self, keys: Keys) -> None:
        self.nodes = keys.nodes
        self.ipcache = keys.ipcache
        self.identities = keys.identity_ids
        self.endpoints = keys.endpoints
        self.mirrors = keys.mesh_mirrors
        self.mesh_statuses = keys.mesh_statuses

    def kind(self, key: str) -> Kind | None:
        if key.startswith(self.ipcache):
            return "ipcache"
        if key.startswith(self.nodes):
            return "node"
        if key.startswith(self.identities):
            return "identity"
        if key.startswith(self.mirrors):
            below = key[len(self.mirrors):].partition("/")[2]
            return _MIRRORED.get(mirrored_kind(below) or "")
        if key.startswith(self.mesh_statuses):
            return "remote"
        return None


MIRROR_SEGMENT = "/clustermesh/mirror/"
"""In every mirrored key (Keys.mesh_mirrors)."""


def agent_record(kind: Kind, kv: KV) -> Node | IPCacheEntry | IdentityRecord:
    """The record `kv` holds as agents get it: a remote cluster's node is named
    `<cluster>/<node>` (as in Cilium), here and in its ipcache entries, so it never takes the
    place of a local node of the same name."""
    record = _RECORD[kind].of_kv(kv)
    if MIRROR_SEGMENT not in kv.key:
        return record
    if isinstance(record, Node):
        return dataclasses.replace(record, name=f"{record.cluster}/{record.name}")
    if isinstance(record, IPCacheEntry) and record.node:
        return dataclasses.replace(record, node=f"{record.cluster}/{record.node}")
    return record


def put_change(kind: Kind, kv: KV) -> pb.Change:
    if kind == "remote":
        status = MeshStatusRecord.of_kv(kv)
        return pb.Change(remote_cluster=pb.RemoteClusterSync(
            name=status.name, cluster_id=status.cluster_id, ready=status.ready))
    return messages.put_change(agent_record(kind, kv))


def delete_change(kind: Kind, kv: KV) -> pb.Change:
    """The removal of what `kv` (the previous value) held."""
    if kind == "remote":
        return pb.Change(remote_cluster_removed=MeshStatusRecord.of_kv(kv).name)
    return messages.removed_change(agent_record(kind, kv))


_DIRECTION = {"ingress": pb.PolicyEntry.INGRESS, "egress": pb.PolicyEntry.EGRESS}
_VERDICT = {"allow": pb.PolicyEntry.ALLOW, "deny": pb.PolicyEntry.DENY}


def policy_change(identity: int, view: ResolvedView) -> pb.Change:
    return pb.Change(policy=pb.IdentityPolicy(
        identity=identity, ingress_enforced=view.ingress_enforced,
        egress_enforced=view.egress_enforced, entries=policy_entries(view.entries),
        dns_patterns=list(view.dns)))


def policy_entries(entries: Iterable[PolicyEntryView]) -> list[pb.PolicyEntry]:
    """Entries as agents get them; an L7 entry has `l7 = HTTP` and its rules in `http` (the
    engine's sorted union, so equal resolutions serialize to equal bytes)."""
    return [pb.PolicyEntry(direction=_DIRECTION[str(e.direction)], peer=e.peer,
                           protocol=e.protocol, port_lo=e.port_lo, port_hi=e.port_hi,
                           verdict=_VERDICT[str(e.verdict)],
                           l7=pb.PolicyEntry.HTTP if e.http else pb.PolicyEntry.NONE,
                           http=[httprules.to_proto(r) for r in e.http]) for e in entries]


def host_policy_change(node: str, policy: HostPolicy | None) -> pb.Change:
    """`node`'s host policy as its agent gets it (None, no such node: nothing enforced)."""
    if policy is None:
        return pb.Change(host_policy=pb.NodeHostPolicy(node=node))
    return pb.Change(host_policy=pb.NodeHostPolicy(
        node=node, ingress_enforced=policy.ingress_enforced,
        egress_enforced=policy.egress_enforced,
        entries=[pb.HostEntry(direction=_DIRECTION[str(e.direction)], peer=e.peer,
                              peer_node=e.peer_node, protocol=e.protocol, port_lo=e.port_lo,
                              port_hi=e.port_hi, verdict=_VERDICT[str(e.verdict)])
                 for e in policy.entries]))


def policy_removed(identity: int) -> pb.Change:
    return pb.Change(policy_removed=identity)
