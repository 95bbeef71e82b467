"""Fills in what an agent cannot know about the other end of a flow: pod names and labels."""

from __future__ import annotations

from collections.abc import Callable

from bulkhead.v1 import flow_pb2
from controlplane.endpoints.registry import EndpointRegistry
from controlplane.identity.index import IdentityIndex
from controlplane.records.codec import Endpoint
from controlplane.store.cache import Change
from controlplane.store.etcd import KV


class FlowEnricher:
    """A ClusterCache listener: the IP -> endpoint map is rebuilt, at the next look-up, only
    after a revision that changed endpoint keys (not after every revision of the cluster)."""

    def __init__(self, endpoints: EndpointRegistry, identities: IdentityIndex,
                 remote_labels: Callable[[int], tuple[str, ...] | None] = lambda _: None,
                 ) -> None:
        self.endpoints = endpoints
        self.identities = identities
        self.remote_labels = remote_labels
        """A connected remote cluster's identity's labels (clustermesh)."""
        self._prefix = endpoints.keys.endpoints
        self._by_ip: dict[str, Endpoint] = {}
        self._stale = True

    # -- ClusterCache listener ----------------------------------------------------------------
    def reset(self, items: dict[str, KV], revision: int) -> None:
        self._stale = True

    def apply(self, revision: int, changes: list[Change]) -> None:
        if not self._stale:
            self._stale = any(c.key.startswith(self._prefix) for c in changes)

    # -- look-ups -----------------------------------------------------------------------------
    def _endpoint(self, ip: str) -> Endpoint | None:
        if self._stale:
            self._by_ip = {e.ip: e for e in self.endpoints.endpoints()}
            self._stale = False
        return self._by_ip.get(ip)

    def enrich(self, flow: flow_pb2.Flow) -> flow_pb2.Flow:
        for peer in (flow.source, flow.destination):
            endpoint = self._endpoint(peer.ip)
            if endpoint is not None and not peer.pod:
                peer.namespace, peer.pod = endpoint.namespace, endpoint.name
            if not peer.labels and peer.identity:
                peer.labels.extend(self.identities.labels_of(peer.identity)
                                   or self.remote_labels(peer.identity) or ())
        return flow
