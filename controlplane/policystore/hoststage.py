"""Each node's resolved host policy, derived revision by revision: the revision pipeline's
stage right after policy resolution (`controlplane/pipeline.py`), whose answer (the nodes whose
host policy changed) the subscription sends to those nodes only.

A node's host policy reads the host rules and every identity (policy stage) and the nodes'
labels (node records), so it is recomputed, for every node, at a revision that changes a
policy, a node or an identity, and nothing is recomputed otherwise. Nodes and host policies
are few (`controlplane.policy.hosts`), so whole recomputation stays cheap."""

from __future__ import annotations

from collections import deque
from collections.abc import Set

from bulkhead import log
from controlplane.policy.hosts import HostPolicy, NodeLabels, resolve_host
from controlplane.records.codec import Node, RecordError
from controlplane.store.cache import Change
from controlplane.store.etcd import KV
from controlplane.store.keys import Keys

from .resolver import PolicyResolver

_log = log.get(__name__)
KEEP = 1024


class HostPolicyStage:
    def __init__(self, keys: Keys, resolver: PolicyResolver) -> None:
        self.keys = keys
        self.resolver = resolver
        self.nodes: dict[str, NodeLabels] = {}
        self.policies: dict[str, HostPolicy] = {}
        """node -> its resolved host policy, at the last revision applied."""
        self.changed_at: deque[int] = deque(maxlen=KEEP)
        """Recent revisions that changed some node's host policy (`changed_between`)."""

    def changed_between(self, after: int, upto: int) -> bool:
        """Whether a revision in (after, upto] changed some node's host policy: what makes
        `policy apply --wait` wait for nodes (HOST_IDENTITY among the affected)."""
        return any(after < revision <= upto for revision in self.changed_at)

    def policy(self, node: str) -> HostPolicy | None:
        """`node`'s host policy (None: no such node)."""
        return self.policies.get(node)

    def reset(self, items: dict[str, KV], revision: int) -> None:
        self.nodes = {}
        for key, kv in items.items():
            if key.startswith(self.keys.nodes):
                self._node(key, kv)
        self.policies = self._resolve_all()

    def apply(self, revision: int, changes: list[Change]) -> Set[str]:
        """The nodes whose host policy changed at `revision` (appeared, changed or gone)."""
        relevant = identities = False
        for change in changes:
            key = change.key
            if key.startswith(self.keys.nodes):
                self._node(key, change.kv if change.kind == "put" else None)
                relevant = True
            elif key.startswith(self.keys.policies):
                relevant = True
            elif self.keys.is_identity(key):
                identities = True
        # Identities churn with endpoints: they matter only while some host rule exists.
        if not relevant and not (identities and any(r.host for r in self.resolver.rules())):
            return frozenset()
        before, self.policies = self.policies, self._resolve_all()
        changed = {node for node in before.keys() | self.policies.keys()
                   if _sent(before.get(node)) != _sent(self.policies.get(node))}
        if changed:
            self.changed_at.append(revision)
        return changed

    def _node(self, key: str, kv: KV | None) -> None:
        name = key[len(self.keys.nodes):]
        if kv is None:
            self.nodes.pop(name, None)
            return
        try:
            node = Node.of_kv(kv)
        except RecordError:
            _log.warning("unreadable node record", key=key)
            return
        self.nodes[name] = NodeLabels(node.name, tuple(node.labels))

    def _resolve_all(self) -> dict[str, HostPolicy]:
        nodes = sorted(self.nodes.values(), key=lambda n: n.name)
        rules = [r for r in self.resolver.rules() if r.host]
        identities = self.resolver.identity_labels()
        return {n.name: resolve_host(n, nodes, rules, identities) for n in nodes}


def _sent(policy: HostPolicy | None) -> tuple[bool, bool, tuple[object, ...]]:
    """What the node's agent gets of its host policy (its labels alone change nothing)."""
    if policy is None:
        return (False, False, ())
    return (policy.ingress_enforced, policy.egress_enforced, policy.entries)
