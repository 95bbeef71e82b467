"""Node labels (what host policies select nodes by): given at registration, changed with
`bulkhead node label`, kept across re-registrations, shown by `node list`; bad ones are
refused naming the field. Against a real etcd and the real CLI."""

from __future__ import annotations

import json

import grpc
import pytest

from bulkhead.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    nodelabels_pb2,
    nodelabels_pb2_grpc,
)
from controlplane.store.keys import Keys
from nodeagent import nodelabels as agent_labels
from tests.conftest import ReplicaFactory
from tests.test_cli import bulkhead


def _violations(err: grpc.aio.AioRpcError) -> str:
    return f"{err.details()} {err.trailing_metadata()}"


async def test_registration_labels_hostname_and_operator_changes_survive_reregistration(
        replicas: ReplicaFactory) -> None:
    replica = await replicas()
    nodes = node_pb2_grpc.NodeServiceStub(replica.channel())
    labels = nodelabels_pb2_grpc.NodeLabelServiceStub(replica.channel())
    request = node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1",
                                           labels=["role=worker", "zone=a"])
    node = await nodes.Register(request)
    assert list(node.labels) == ["kubernetes.io/hostname=n1", "role=worker", "zone=a"]

    changed = await labels.Label(nodelabels_pb2.LabelNodeRequest(
        name="n1", add=["ssh=allowed", "zone=b"], remove=["role"]))
    assert list(changed.labels) == ["kubernetes.io/hostname=n1", "ssh=allowed", "zone=b"]
    # The agent restarts and registers with its own labels again: the operator's stay.
    again = await nodes.Register(request)
    assert list(again.labels) == ["kubernetes.io/hostname=n1", "ssh=allowed", "zone=b"]
    await replica.cp.cache.wait_for((await replica.cp.etcd.status()).revision)
    listed = (await admin_pb2_grpc.AdminServiceStub(replica.channel()).ListNodes(
        admin_pb2.ListNodesRequest())).nodes
    assert list(listed[0].labels) == list(again.labels)
    # Setting a removed key brings it back; removing an operator's key leaves the agent's.
    back = await labels.Label(nodelabels_pb2.LabelNodeRequest(name="n1", add=["role=db"]))
    assert "role=db" in back.labels
    await labels.Label(nodelabels_pb2.LabelNodeRequest(name="n1", remove=["zone"]))
    again = await nodes.Register(request)
    assert list(again.labels) == ["kubernetes.io/hostname=n1", "role=db", "ssh=allowed"]

    # Deregistering forgets the operator's labels with the node (as deleting a Kubernetes node).
    await nodes.Deregister(node_pb2.DeregisterNodeRequest(name="n1"))
    kvs, _, _ = await replica.cp.etcd.range(Keys(replica.cp.config.cluster_name)
                                            .node_label_changes)
    assert kvs == []


@pytest.mark.parametrize(("request_fields", "field", "text"), [
    ({"add": ["bad key=x"]}, "add[0]", "key must be"),
    ({"add": ["zone=-a"]}, "add[0]", "not a label value"),
    ({"add": ["zone"]}, "add[0]", "must be key=value"),
    ({"add": ["a=1", "a=2"]}, "add[1]", "twice"),
    ({"add": ["kubernetes.io/hostname=x"]}, "add[0]", "node's name"),
    ({"remove": ["ok", "Bad/x"]}, "remove[1]", "key prefix"),
    ({"add": ["a=1"], "remove": ["a"]}, "remove[0]", "also set"),
    ({}, "add", "at least one"),
])
async def test_label_refuses_bad_input_naming_the_field(
        replicas: ReplicaFactory, request_fields: dict[str, list[str]], field: str,
        text: str) -> None:
    replica = await replicas()
    await node_pb2_grpc.NodeServiceStub(replica.channel()).Register(
        node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1", labels=["zone=a"]))
    labels = nodelabels_pb2_grpc.NodeLabelServiceStub(replica.channel())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await labels.Label(nodelabels_pb2.LabelNodeRequest(name="n1", **request_fields))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in _violations(err.value) and text in _violations(err.value)
    node = await replica.cp.nodes.get("n1")
    assert node.labels == ("kubernetes.io/hostname=n1", "zone=a"), "nothing half-written"


async def test_register_refuses_bad_labels_and_label_needs_a_node(
        replicas: ReplicaFactory) -> None:
    replica = await replicas()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await node_pb2_grpc.NodeServiceStub(replica.channel()).Register(
            node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1",
                                         labels=["ok=1", "x=bad value"]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "labels[1]" in _violations(err.value)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await nodelabels_pb2_grpc.NodeLabelServiceStub(replica.channel()).Label(
            nodelabels_pb2.LabelNodeRequest(name="ghost", add=["a=b"]))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_cli_node_label_and_list(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    await node_pb2_grpc.NodeServiceStub(replica.channel()).Register(
        node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1", labels=["role=worker"]))
    rc, out, err = await bulkhead(replica.address, "node", "label", "n1", "ssh=yes", "role-")
    assert rc == 0, err
    assert out.strip() == "node n1 labeled: kubernetes.io/hostname=n1,ssh=yes"
    rc, out, err = await bulkhead(replica.address, "node", "list", "-o", "json")
    assert rc == 0, err
    assert json.loads(out)[0]["labels"] == ["kubernetes.io/hostname=n1", "ssh=yes"]
    rc, out, _ = await bulkhead(replica.address, "node", "list")
    assert "LABELS" in out and "kubernetes.io/hostname=n1,ssh=yes" in out
    rc, _, err = await bulkhead(replica.address, "node", "label", "n1", "ssh")
    assert rc == 1 and "KEY=VALUE" in err
    rc, _, err = await bulkhead(replica.address, "node", "label", "n1", "bad key=x")
    assert rc == 1 and "INVALID_ARGUMENT" in err and "add[0]" in err


def test_agent_flag_and_automatic_labels() -> None:
    given = agent_labels.flag("zone=a, role=worker,")
    assert given == {"zone": "a", "role": "worker"}
    labels = agent_labels.registration_labels(given | {"kubernetes.io/os": "custom"})
    assert "kubernetes.io/os=custom" in labels and "zone=a" in labels
    assert any(label.startswith("kubernetes.io/arch=") for label in labels)
    with pytest.raises(Exception, match="key=value"):
        agent_labels.flag("zone")
