"""The etcd key layout (docs/etcd-layout.md): every key lives under /bulkhead/v1/<cluster>/."""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "/bulkhead/v1"


@dataclass(frozen=True)
class Keys:
    cluster: str

    @property
    def prefix(self) -> str:
        return f"{ROOT}/{self.cluster}/"

    # identities
    @property
    def identity_ids(self) -> str:
        return f"{self.prefix}identities/id/"

    def identity(self, ident: int) -> str:
        return f"{self.identity_ids}{ident}"

    @property
    def identity_labels_prefix(self) -> str:
        return f"{self.prefix}identities/labels/"

    def identity_labels(self, canonical: str) -> str:
        return f"{self.identity_labels_prefix}{canonical}"

    @property
    def identity_refs_prefix(self) -> str:
        return f"{self.prefix}identities/refs/"

    def identity_refs(self, ident: int) -> str:
        return f"{self.identity_refs_prefix}{ident}/"

    def identity_ref(self, ident: int, holder: str) -> str:
        return f"{self.identity_refs(ident)}{holder}"

    # nodes and their allocations
    @property
    def nodes(self) -> str:
        return f"{self.prefix}nodes/"

    def node(self, name: str) -> str:
        return f"{self.nodes}{name}"

    @property
    def node_label_changes(self) -> str:
        return f"{self.prefix}node-labels/"

    def node_labels(self, name: str) -> str:
        return f"{self.node_label_changes}{name}"

    @property
    def node_allocations(self) -> str:
        return f"{self.prefix}ipam/nodes/"

    def node_allocation(self, name: str) -> str:
        return f"{self.node_allocations}{name}"

    @property
    def node_ids(self) -> str:
        return f"{self.prefix}ipam/node-ids/"

    def node_id(self, node_id: int) -> str:
        return f"{self.node_ids}{node_id}"

    @property
    def pod_cidrs(self) -> str:
        return f"{self.prefix}ipam/pod-cidrs/"

    def pod_cidr(self, cidr: str) -> str:
        return f"{self.pod_cidrs}{cidr.replace('/', '_')}"

    # endpoints and ipcache
    @property
    def endpoints(self) -> str:
        return f"{self.prefix}endpoints/"

    def endpoint(self, namespace: str, name: str) -> str:
        return f"{self.endpoints}{namespace}/{name}"

    @property
    def ipcache(self) -> str:
        return f"{self.prefix}ipcache/"

    def ipcache_entry(self, prefix: str) -> str:
        return f"{self.ipcache}{prefix.replace('/', '_')}"

    # policies
    @property
    def policies(self) -> str:
        return f"{self.prefix}policies/"

    # control-plane replicas (leased presence)
    @property
    def replicas(self) -> str:
        return f"{self.prefix}replicas/"

    def replica(self, replica_id: str) -> str:
        return f"{self.replicas}{replica_id}"

    # subscription status (controlplane/subscription/status.py)
    @property
    def subscription_records(self) -> str:
        """One record per replica: the nodes it serves."""
        return f"{self.prefix}subscription-replicas/"

    @property
    def subscription_finals(self) -> str:
        """Final status of cleanly disconnected nodes, one key each."""
        return f"{self.prefix}subscriptions/"

    @property
    def namespaced_policies(self) -> str:
        return f"{self.policies}namespaced/"

    @property
    def clusterwide_policies(self) -> str:
        return f"{self.policies}clusterwide/"

    def policy(self, namespace: str, name: str) -> str:
        """A namespaced policy's key; namespace "" names a clusterwide policy."""
        if not namespace:
            return f"{self.clusterwide_policies}{name}"
        return f"{self.namespaced_policies}{namespace}/{name}"

    # services (controlplane/servicestore/) and their claims
    @property
    def services(self) -> str:
        return f"{self.prefix}services/"

    def service(self, namespace: str, name: str) -> str:
        return f"{self.services}{namespace}/{name}"

    @property
    def service_ips(self) -> str:
        """ClusterIP claims: `<ip>` -> "namespace/name"."""
        return f"{self.prefix}ipam/service-ips/"

    def service_ip(self, ip: str) -> str:
        return f"{self.service_ips}{ip}"

    @property
    def service_ids(self) -> str:
        """Frontend id claims: `<id>` -> "namespace/name"."""
        return f"{self.prefix}ipam/service-ids/"

    def service_id(self, ident: int) -> str:
        return f"{self.service_ids}{ident}"

    # clustermesh (controlplane/clustermesh/)
    @property
    def cluster_info(self) -> str:
        """This cluster's name, id and pod pool, read by clusters that connect to it; outside
        the cluster prefix (like the PKI's keys), so never in the cache."""
        return f"/bulkhead/clusters/{self.cluster}"

    @property
    def mesh_remotes(self) -> str:
        """The connected remote clusters: `<name>` -> its connection."""
        return f"{self.prefix}clustermesh/remotes/"

    def mesh_remote(self, name: str) -> str:
        return f"{self.mesh_remotes}{name}"

    @property
    def mesh_mirrors(self) -> str:
        """Remote state mirrored by the syncers: `<name>/<the remote's key below its prefix>`."""
        return f"{self.prefix}clustermesh/mirror/"

    def mesh_mirror(self, name: str) -> str:
        return f"{self.mesh_mirrors}{name}/"

    def is_identity(self, key: str) -> bool:
        """An identity of this cluster (`identities/id/<id>`) or of a connected remote one
        (mirrored): what policy resolution selects peers among."""
        if key.startswith(self.identity_ids):
            return True
        if not key.startswith(self.mesh_mirrors):
            return False
        return key[len(self.mesh_mirrors):].partition("/")[2].startswith("identities/id/")

    @property
    def mesh_statuses(self) -> str:
        return f"{self.prefix}clustermesh/status/"

    def mesh_status(self, name: str) -> str:
        return f"{self.mesh_statuses}{name}"

    @property
    def mesh_leaders(self) -> str:
        """The replica syncing each remote, on its lease."""
        return f"{self.prefix}clustermesh/leaders/"

    def mesh_leader(self, name: str) -> str:
        return f"{self.mesh_leaders}{name}"

    # the connectivity test
    @property
    def connectivity_lock(self) -> str:
        """The running `connectivity test`'s holder, on a lease of its own."""
        return f"{self.prefix}connectivity/lock"
