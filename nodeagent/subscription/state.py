"""What the agent received: nodes, ipcache, identities, its identities' policies, services and
its node's host policy.

A snapshot is applied over the current state and every object it did not contain is removed
when Synced arrives, so a datapath that kept enforcing through a restart or a Reset only sees
the differences.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict

from bulkhead.v1 import subscription_pb2 as pb
from bulkhead.v1 import types_pb2

Key = tuple[str, str]


class ReceivedState:
    def __init__(self) -> None:
        self.nodes: dict[str, types_pb2.Node] = {}
        self.ipcache: dict[str, types_pb2.IPCacheEntry] = {}
        self.identities: dict[int, types_pb2.Identity] = {}
        self.policies: dict[int, pb.IdentityPolicy] = {}
        self.services: dict[str, types_pb2.Service] = {}
        """By "namespace/name"; each with every current backend (a change re-sends it whole)."""
        self.remotes: dict[str, pb.RemoteClusterSync] = {}
        """Connected remote clusters' sync state, by name (nodeagent/meshgrace.py)."""
        self.host_policy: pb.NodeHostPolicy | None = None
        """This node's resolved host policy (None: not received, nothing enforced)."""
        self.revision = 0
        self._snapshot_seen: set[Key] | None = None

    @property
    def in_snapshot(self) -> bool:
        return self._snapshot_seen is not None

    def begin_snapshot(self) -> None:
        self._snapshot_seen = set()

    def end_snapshot(self, revision: int) -> list[pb.Change]:
        """Removes what the snapshot did not contain; returns those removals."""
        seen, self._snapshot_seen = self._snapshot_seen or set(), None
        removed: list[pb.Change] = []
        removed += [pb.Change(node_removed=k) for k in self.nodes if ("node", k) not in seen]
        removed += [pb.Change(ipcache_removed=k) for k in self.ipcache
                    if ("ipcache", k) not in seen]
        removed += [pb.Change(identity_removed=k) for k in self.identities
                    if ("identity", str(k)) not in seen]
        removed += [pb.Change(policy_removed=k) for k in self.policies
                    if ("policy", str(k)) not in seen]
        removed += [pb.Change(service_removed=k) for k in self.services
                    if ("service", k) not in seen]
        removed += [pb.Change(remote_cluster_removed=k) for k in self.remotes
                    if ("remote", k) not in seen]
        if self.host_policy is not None and ("host", "") not in seen:
            removed.append(pb.Change(host_policy=pb.NodeHostPolicy(node=self.host_policy.node)))
        for change in removed:
            self.apply(change)
        self.revision = revision
        return removed

    def apply(self, change: pb.Change) -> None:
        which = change.WhichOneof("object")
        seen = self._snapshot_seen
        if which == "node":
            self.nodes[change.node.name] = change.node
            if seen is not None:
                seen.add(("node", change.node.name))
        elif which == "ipcache":
            self.ipcache[change.ipcache.prefix] = change.ipcache
            if seen is not None:
                seen.add(("ipcache", change.ipcache.prefix))
        elif which == "identity":
            self.identities[change.identity.id] = change.identity
            if seen is not None:
                seen.add(("identity", str(change.identity.id)))
        elif which == "policy":
            self.policies[change.policy.identity] = change.policy
            if seen is not None:
                seen.add(("policy", str(change.policy.identity)))
        elif which == "service":
            ref = f"{change.service.namespace}/{change.service.name}"
            self.services[ref] = change.service
            if seen is not None:
                seen.add(("service", ref))
        elif which == "remote_cluster":
            self.remotes[change.remote_cluster.name] = change.remote_cluster
            if seen is not None:
                seen.add(("remote", change.remote_cluster.name))
        elif which == "remote_cluster_removed":
            self.remotes.pop(change.remote_cluster_removed, None)
        elif which == "host_policy":   # an empty one (nothing enforced) is kept as None
            empty = not (change.host_policy.ingress_enforced
                         or change.host_policy.egress_enforced or change.host_policy.entries)
            self.host_policy = None if empty else change.host_policy
            if seen is not None:
                seen.add(("host", ""))
        elif which == "node_removed":
            self.nodes.pop(change.node_removed, None)
        elif which == "ipcache_removed":
            self.ipcache.pop(change.ipcache_removed, None)
        elif which == "identity_removed":
            self.identities.pop(change.identity_removed, None)
        elif which == "policy_removed":
            self.policies.pop(change.policy_removed, None)
        elif which == "service_removed":
            self.services.pop(change.service_removed, None)

    def dump(self) -> dict[str, Any]:
        """A canonical, JSON-able copy (sorted keys), for comparisons and operators."""

        def d(message: Any) -> dict[str, Any]:
            return MessageToDict(message, preserving_proto_field_name=True)

        out = {
            "revision": self.revision,
            "nodes": {k: d(v) for k, v in sorted(self.nodes.items())},
            "ipcache": {k: d(v) for k, v in sorted(self.ipcache.items())},
            "identities": {str(k): d(v) for k, v in sorted(self.identities.items())},
            "policies": {str(k): d(v) for k, v in sorted(self.policies.items())},
            "services": {k: d(v) for k, v in sorted(self.services.items())},
            "remotes": {k: d(v) for k, v in sorted(self.remotes.items())},
        }
        if self.host_policy is not None:
            out["host_policy"] = d(self.host_policy)
        return out

    def content(self) -> dict[str, Any]:
        """`dump()` without the revision: equal for two agents that hold the same objects."""
        data = self.dump()
        del data["revision"]
        return data
