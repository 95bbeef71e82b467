"""The `bulkhead` CLI as an operator runs it, against a real replica."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ReplicaFactory, eventually

ROOT = Path(__file__).resolve().parents[1]


async def bulkhead(address: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", "--server", address, "--insecure", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'proto'}"})
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_allocate_json_and_same_id_from_second_replica(replicas: ReplicaFactory) -> None:
    a, b = await replicas(), await replicas()
    rc, out, _ = await bulkhead(a.address, "identity", "allocate", "k8s:org=empire",
                                "k8s:class=deathstar", "-o", "json")
    assert rc == 0
    first = json.loads(out)
    assert first["id"] >= 256
    assert first["labels"] == ["k8s:class=deathstar", "k8s:org=empire"]
    rc, out, _ = await bulkhead(b.address, "identity", "allocate", "k8s:class=deathstar",
                                "k8s:org=empire", "-o", "json")
    assert json.loads(out)["id"] == first["id"]


async def test_lookup_shows_the_identity_and_exits_1_when_unknown(
        replicas: ReplicaFactory) -> None:
    replica = await replicas()
    rc, out, _ = await bulkhead(replica.address, "identity", "allocate", "k8s:org=empire",
                                "k8s:class=tiefighter", "-o", "json")
    allocated = json.loads(out)
    await replica.cp.cache.wait_for((await replica.cp.etcd.status()).revision)
    rc, out, err = await bulkhead(replica.address, "identity", "lookup", "k8s:class=tiefighter",
                                  "k8s:org=empire", "-o", "json")
    assert rc == 0, err
    assert json.loads(out) == {"id": allocated["id"], "labels": allocated["labels"],
                               "references": 1}
    rc, out, _ = await bulkhead(replica.address, "identity", "lookup", "reserved:world")
    assert rc == 0 and out.split()[:4] == ["ID", "LABELS", "REFS", "2"]
    rc, out, err = await bulkhead(replica.address, "identity", "lookup", "k8s:org=rebels")
    assert rc == 1 and out == ""
    assert "no identity has the labels k8s:org=rebels" in err
    rc, _, err = await bulkhead(replica.address, "identity", "lookup", "k8s:a/b/c=d")
    assert rc == 1 and "INVALID_ARGUMENT" in err and "labels[0]" in err and "lookups" not in err
    # `--label` matches as `observe --from-label` does: without a source, any source.
    rc, out, err = await bulkhead(replica.address, "identity", "list", "--label", "org=empire",
                                  "-o", "json")
    assert rc == 0, err
    assert [i["id"] for i in json.loads(out)] == [allocated["id"]]
    rc, out, _ = await bulkhead(replica.address, "identity", "list", "--label",
                                "k8s:org=empire", "--label", "class=tiefighter", "-o", "json")
    assert [i["id"] for i in json.loads(out)] == [allocated["id"]]
    rc, out, _ = await bulkhead(replica.address, "identity", "list", "--label",
                                "container:org=empire", "-o", "json")
    assert json.loads(out) == []


async def test_endpoint_lifecycle_and_lists(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    from bulkhead.v1 import node_pb2, node_pb2_grpc

    await node_pb2_grpc.NodeServiceStub(replica.channel()).Register(
        node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    rc, out, err = await bulkhead(replica.address, "endpoint", "create", "xwing", "--node", "n1",
                                  "--labels", "k8s:org=alliance,k8s:class=xwing", "-o", "json")
    assert rc == 0, err
    made = json.loads(out)
    assert set(made) == {"namespace", "name", "node", "labels", "ip", "identity",
                         "ingress_enforced", "egress_enforced", "ports"}
    assert made["ports"] == []
    rc, out, _ = await bulkhead(replica.address, "endpoint", "list", "-o", "json")
    assert [e["name"] for e in json.loads(out)] == ["xwing"]
    rc, out, _ = await bulkhead(replica.address, "endpoint", "list")
    assert "default/xwing" in out and made["ip"] in out
    # The headers `agent endpoint list` (and `cilium endpoint list`) use; labels sorted, as
    # in `identity list`, in the table and the JSON.
    header = [line.split() for line in out.splitlines()[:2]]
    assert header[0] == ["ENDPOINT", "NODE", "POLICY", "(ingress)", "POLICY", "(egress)",
                         "IDENTITY", "LABELS", "(source:key[=value])", "IPv4"]
    assert header[1] == ["ENFORCEMENT", "ENFORCEMENT"]
    assert out.index("k8s:class=xwing") < out.index("k8s:org=alliance")
    assert made["labels"] == ["k8s:class=xwing", "k8s:org=alliance"]
    rc, out, _ = await bulkhead(replica.address, "status")
    assert "Identities:      1 allocated (plus 11 reserved; `bulkhead identity list` shows " \
        "both)" in out, out
    rc, out, _ = await bulkhead(replica.address, "ipcache", "list", "-o", "json")
    assert json.loads(out)[0]["prefix"] == f"{made['ip']}/32"
    rc, out, _ = await bulkhead(replica.address, "node", "list", "-o", "json")
    assert json.loads(out)[0]["tunnel"] == {"ip": "192.0.2.1", "port": 8472}
    rc, out, _ = await bulkhead(replica.address, "status", "-o", "json")
    assert rc == 0 and json.loads(out)["etcd"]["healthy"] is True
    rc, _, err = await bulkhead(replica.address, "endpoint", "delete", "default/xwing")
    assert rc == 0, err


async def test_errors_exit_non_zero_with_the_servers_message(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    rc, _, err = await bulkhead(replica.address, "identity", "allocate", "k8s:a/b/c=d")
    assert rc == 1
    assert "INVALID_ARGUMENT" in err and "labels[0]" in err
    rc, _, err = await bulkhead(replica.address, "identity", "get", "99999")
    assert rc == 1 and "NOT_FOUND" in err
    rc, _, err = await bulkhead("127.0.0.1:1", "status")
    assert rc == 3 and "cannot reach the control plane" in err  # 2: a malformed command
    rc, _, err = await bulkhead(replica.address, "status", "--no-such-flag")
    assert rc == 2 and "usage:" in err
    # Agent commands: an unknown node is not found (1), no agent to ask is a usage error (2),
    # a socket nobody serves or an unreachable control plane is unreachable (3).
    rc, _, err = await bulkhead(replica.address, "agent", "--node", "nosuch", "status")
    assert rc == 1 and "no node 'nosuch' in the cluster" in err
    rc, _, err = await bulkhead(replica.address, "agent", "--agent-socket", "/nonexistent.sock",
                                "status")
    assert rc == 3 and "no agent socket at /nonexistent.sock" in err
    rc, _, err = await bulkhead("127.0.0.1:1", "agent", "--node", "nosuch", "status")
    assert rc == 3 and "cannot reach the control plane" in err


async def test_status_lists_every_replica(replicas: ReplicaFactory) -> None:
    a, b = await replicas(replica_id="alpha"), await replicas(replica_id="beta")

    async def both_listed() -> bool:
        rc, out, _ = await bulkhead(a.address, "status", "-o", "json")
        return rc == 0 and json.loads(out)["replicas"] == ["alpha", "beta"]

    assert await eventually(both_listed, timeout=10)
    rc, out, _ = await bulkhead(b.address, "status")
    assert rc == 0 and "beta (this), alpha" in out and "Flows:" in out
    assert "Policies:        0" in out
    await a.stop()

    async def only_beta() -> bool:
        _, out, _ = await bulkhead(b.address, "status", "-o", "json")
        return json.loads(out)["replicas"] == ["beta"]

    assert await eventually(only_beta, timeout=10), "a stopped replica must drop out"


async def test_output_flag_before_or_after_the_command(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    rc, after, _ = await bulkhead(replica.address, "identity", "list", "-o", "json")
    assert rc == 0
    rc, before, _ = await bulkhead(replica.address, "-o", "json", "identity", "list")
    assert rc == 0
    assert json.loads(before) == json.loads(after)
    rc, table, _ = await bulkhead(replica.address, "-o", "json", "identity", "list", "-o",
                                  "table")
    assert rc == 0 and table.split()[0] == "ID"


def test_help_shows_the_defaults_the_readme_gives() -> None:
    """`--help` of `bulkhead` and `bulkhead-lab` shows each option's default (several were
    only in the README: --holder admin, --nodes 2, --namespace default)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'proto'}"}

    def helptext(module: str, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", module, *args, "--help"],
                              capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        return " ".join(done.stdout.split())

    assert "--holder HOLDER (default: admin)" in helptext("cli.main", "identity", "release")
    assert "(default: default)" in helptext("cli.main", "endpoint", "create")
    assert "--wait limit in seconds (default: 30.0)" in helptext("cli.main", "policy", "apply")
    assert "--nodes NODES (default: 2)" in helptext("integration.lab.cli", "up")
    assert "(default: bpf)" in helptext("integration.lab.cli", "up")
    assert "(default: default)" in helptext("integration.lab.cli", "pod", "create")
