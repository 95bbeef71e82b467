"""Host policies through the API and the CLI against a real etcd: `policy resolve --node`
and `policy trace --src-node/--dst-node` follow node labels as `node label` changes them."""

from __future__ import annotations

import json
from pathlib import Path

from bulkhead.v1 import node_pb2, node_pb2_grpc
from tests.conftest import ReplicaFactory, eventually
from tests.test_cli import bulkhead

SSH = """apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: ssh-from-bastion}
spec:
  nodeSelector: {matchLabels: {role: worker}}
  ingress:
  - fromNodes: [{matchLabels: {bastion: "true"}}]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
  - fromEntities: [host]
"""


async def test_resolve_and_trace_host_policies_follow_node_labels(
        replicas: ReplicaFactory, tmp_path: Path) -> None:
    replica = await replicas()
    nodes = node_pb2_grpc.NodeServiceStub(replica.channel())
    for name, ip, labels in (("n1", "192.0.2.1", ["role=worker"]),
                             ("n2", "192.0.2.2", ["bastion=true"]),
                             ("n3", "192.0.2.3", [])):
        await nodes.Register(node_pb2.RegisterNodeRequest(name=name, underlay_ip=ip,
                                                          labels=labels))
    policy = tmp_path / "ssh.yaml"
    policy.write_text(SSH)
    rc, _, err = await bulkhead(replica.address, "policy", "apply", "-f", str(policy))
    assert rc == 0, err

    async def resolved(node: str) -> dict:  # type: ignore[type-arg]
        rc, out, err = await bulkhead(replica.address, "policy", "resolve", "--node", node,
                                      "-o", "json")
        assert rc == 0, err
        return json.loads(out)  # type: ignore[no-any-return]

    found = await resolved("n1")
    assert found["ingress_enforced"] and not found["egress_enforced"]
    assert "role=worker" in found["labels"]
    assert [(e["direction"], e["peer"], e["peer_node"], e["port_lo"], e["verdict"])
            for e in found["entries"]] == [("ingress", 1, "", 0, "allow"),
                                           ("ingress", 6, "n2", 22, "allow")]
    assert found["entries"][1]["origins"] == [
        {"policy": "ssh-from-bastion", "kind": "CiliumClusterwideNetworkPolicy",
         "rule": "spec.ingress[0]"}]
    assert not (await resolved("n3"))["ingress_enforced"]
    rc, out, _ = await bulkhead(replica.address, "policy", "resolve", "--node", "n1")
    assert "host of node n1" in out and "node n2" in out

    async def trace(src_node: str, port: str) -> tuple[str, dict]:  # type: ignore[type-arg]
        rc, out, err = await bulkhead(replica.address, "policy", "trace", "--src-node",
                                      src_node, "--dst-node", "n1", "--dport", port,
                                      "-o", "json")
        assert rc == 0, err
        answer = json.loads(out)
        return answer["verdict"], answer["ingress"]

    assert (await trace("n2", "22/TCP"))[0] == "ALLOWED"
    verdict, ingress = await trace("n3", "22/TCP")
    assert verdict == "DENIED" and ingress["reason"] == "default-deny"
    assert ingress["enforced_by"] == ["ssh-from-bastion"]
    assert (await trace("n2", "80/TCP"))[0] == "DENIED"
    assert (await trace("n1", "8080/TCP"))[0] == "ALLOWED"    # its own host: fromEntities host
    # A pod (by labels) to the host: no rule admits it.
    rc, out, _ = await bulkhead(replica.address, "policy", "trace", "--src", "k8s:app=web",
                                "--dst-node", "n1", "--dport", "22/TCP")
    assert rc == 0 and out.startswith("DENIED"), out

    # Labelling n3 as a bastion lets it in: resolution reads the node's current labels.
    rc, _, err = await bulkhead(replica.address, "node", "label", "n3", "bastion=true")
    assert rc == 0, err

    async def n3_allowed() -> bool:
        return (await trace("n3", "22/TCP"))[0] == "ALLOWED"
    assert await eventually(n3_allowed)
    assert {e["peer_node"] for e in (await resolved("n1"))["entries"]} == {"", "n2", "n3"}


async def test_host_policy_cli_errors(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    rc, _, err = await bulkhead(replica.address, "policy", "resolve", "--node", "ghost")
    assert rc == 1 and "NOT_FOUND" in err and "ghost" in err
    rc, _, err = await bulkhead(replica.address, "policy", "trace", "--src", "k8s:a=b",
                                "--src-node", "n1", "--dst", "k8s:c=d", "--dport", "22/TCP")
    assert rc == 2 and "not allowed with argument" in err
    rc, _, err = await bulkhead(replica.address, "policy", "trace", "--src-node", "n1",
                                "--dst", "k8s:c=d", "--dport", "22/TCP", "--http-method", "GET")
    assert rc == 1 and "--http-*" in err
    rc, _, err = await bulkhead(replica.address, "policy", "trace", "--src-node", "ghost",
                                "--dst", "k8s:c=d", "--dport", "22/TCP")
    assert rc == 1 and "NOT_FOUND" in err
