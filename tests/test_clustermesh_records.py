"""Clustermesh records and keys, pure: mirrored keys decode as the remote kind (a bad one is a
bad record like any other), agents get them as their kind, conflicts name the other cluster."""

from __future__ import annotations

from controlplane.clustermesh.remote import conflicts
from controlplane.clustermesh.syncer import WATCHED
from controlplane.records.codec import (
    MIRRORED,
    ClusterInfoRecord,
    IdentityRecord,
    IPCacheEntry,
    MeshStatusRecord,
    Node,
    Records,
    RemoteClusterRecord,
    mirrored_kind,
)
from controlplane.store.etcd import KV, prefix_end
from controlplane.store.keys import Keys
from controlplane.subscription import content

KEYS = Keys("c1")
MIRROR = KEYS.mesh_mirror("c2")
NODE = Node("n1", 1, "192.0.2.2", "10.2.0.0/24", "192.0.2.2", 8472, "c2", 5)


def test_mirrored_records_decode_as_their_remote_kind() -> None:
    records = Records(KEYS.prefix)
    for key, record in ((MIRROR + "nodes/n1", NODE),
                        (MIRROR + "ipcache/10.2.0.2_32", IPCacheEntry(
                            "10.2.0.2/32", 131328, "n1", "192.0.2.2", 8472, "c2")),
                        (MIRROR + "identities/id/131328", IdentityRecord(131328, ("k8s:a=b",))),
                        (KEYS.mesh_remote("c2"), RemoteClusterRecord(
                            "c2", 2, "10.2.0.0/16", ("127.0.0.1:2379",))),
                        (KEYS.mesh_status("c2"), MeshStatusRecord("c2", 7, True))):
        decoded, problem = records.decode(key, record.encode())
        assert problem is None and decoded == record, key
    _, problem = records.decode(MIRROR + "identities/id/5", IdentityRecord(6, ()).encode())
    assert problem == ("clustermesh_mirror", "id is not its key's")


def test_agents_get_mirrored_kinds_with_the_remote_node_qualified() -> None:
    classify = content.Classifier(KEYS)
    assert classify.kind(MIRROR + "nodes/n1") == "node"
    assert classify.kind(MIRROR + "ipcache/10.2.0.2_32") == "ipcache"
    assert classify.kind(MIRROR + "identities/id/131328") == "identity"
    assert classify.kind(MIRROR + "identities/refs/131328/x") is None
    assert classify.kind(KEYS.mesh_remote("c2")) is None
    # a remote's sync status reaches agents as a small RemoteClusterSync (their sync grace)
    assert classify.kind(KEYS.mesh_status("c2")) == "remote"
    status = KV(KEYS.mesh_status("c2"), MeshStatusRecord("c2", 7, True, cluster_id=2).encode(),
                2, 2, 1, 0)
    sync = content.put_change("remote", status).remote_cluster
    assert (sync.name, sync.cluster_id, sync.ready) == ("c2", 2, True)
    assert content.delete_change("remote", status).remote_cluster_removed == "c2"
    kv = KV(MIRROR + "nodes/n1", NODE.encode(), 2, 2, 1, 0)
    assert content.put_change("node", kv).node.name == "c2/n1"
    assert content.delete_change("node", kv).node_removed == "c2/n1"
    local = KV(KEYS.node("n1"), NODE.encode(), 2, 2, 1, 0)
    assert content.put_change("node", local).node.name == "n1"


def test_conflicts_name_the_cluster_they_clash_with() -> None:
    local = ClusterInfoRecord("c1", 1, "10.1.0.0/16")
    connected = [RemoteClusterRecord("c2", 2, "10.2.0.0/16", ("e",))]
    found = {str(v) for v in conflicts(local, ClusterInfoRecord("c3", 2, "10.2.128.0/17"),
                                       connected)}
    assert found == {
        "cluster_id: cluster c3 has id 2, the id of connected cluster c2",
        "pod_cidr: cluster c3's pod pool 10.2.128.0/17 overlaps connected cluster c2's "
        "10.2.0.0/16"}
    assert [str(v) for v in conflicts(local, ClusterInfoRecord("c1", 0, "10.9.0.0/16"), [])] \
        == ["name: 'c1' is the local cluster's name",
            "cluster_id: cluster c1 has id 0; a mesh needs ids 1-255"]
    assert conflicts(local, ClusterInfoRecord("c4", 4, "10.4.0.0/16"), connected) == []


def test_the_remote_watch_covers_every_mirrored_kind() -> None:
    low, high = WATCHED[0].encode(), prefix_end(WATCHED[1])
    for prefix, _record in MIRRORED:
        assert low <= prefix.encode() and prefix_end(prefix) <= high, prefix
    for skipped in ("subscription-replicas/r1", "subscriptions/n1", "clustermesh/mirror/c/x"):
        assert not low <= skipped.encode() < high, skipped
    # inside the range but not mirrored: left out event by event
    assert mirrored_kind("policies/default/x") is None
