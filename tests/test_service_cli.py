"""`bulkhead service ...` as an operator runs it, against a real replica and etcd."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bulkhead.v1 import node_pb2, node_pb2_grpc
from tests.conftest import ReplicaFactory
from tests.test_cli import bulkhead
from tests.test_service_parse import DEMO
from tests.test_services_api import NS, make_endpoint

pytestmark = pytest.mark.timeout(120)
DS = ["k8s:org=empire", "k8s:class=deathstar", NS]
DNS = """\
apiVersion: v1
kind: Service
metadata: {name: dns, namespace: kube-system}
spec:
  clusterIP: None
  selector: {app: dns}
  ports:
  - {name: dns, port: 53, protocol: UDP}
"""


async def test_apply_list_get_delete(replicas: ReplicaFactory, tmp_path: Path) -> None:
    replica = await replicas()
    await node_pb2_grpc.NodeServiceStub(replica.channel()).Register(
        node_pb2.RegisterNodeRequest(name="n1", underlay_ip="192.0.2.1"))
    ds1 = await make_endpoint(replica, "n1", "deathstar-1", DS)
    ds2 = await make_endpoint(replica, "n1", "deathstar-2", DS)
    dns = await make_endpoint(replica, "n1", "dns-1",
                              ["k8s:app=dns", "k8s:io.kubernetes.pod.namespace=kube-system"],
                              namespace="kube-system")
    path = tmp_path / "http-sw-app.yaml"
    path.write_text(DEMO + "---\n" + DNS)
    address = replica.address

    rc, out, err = await bulkhead(address, "service", "apply", "-f", str(path))
    assert rc == 0, err
    assert re.search(r"^service default/deathstar created \(10\.\d+\.\d+\.\d+, id 1\)$", out,
                     re.M), out
    assert "service kube-system/dns created (headless)" in out
    assert "note: documents[1]: Deployment deathstar (apps/v1) skipped: not a Service" in err
    rc, out, _ = await bulkhead(address, "service", "apply", "-f", str(path))
    assert rc == 0 and "service default/deathstar unchanged" in out

    rc, out, _ = await bulkhead(address, "service", "list", "-o", "json")
    listed = json.loads(out)
    assert [(s["namespace"], s["name"], s["type"]) for s in listed] == [
        ("default", "deathstar", "ClusterIP"), ("kube-system", "dns", "Headless")]
    deathstar = listed[0]
    assert set(deathstar) == {"namespace", "name", "id", "type", "cluster_ip", "headless",
                              "session_affinity", "selector", "ports", "backends"}
    assert deathstar["selector"] == {"class": "deathstar", "org": "empire"}
    assert [(b["ip"], b["port"], b["endpoint"]) for b in deathstar["backends"]] == [
        (ds1, 80, "default/deathstar-1"), (ds2, 80, "default/deathstar-2")]
    assert set(deathstar["backends"][0]) == {"ip", "port", "protocol", "port_name", "node",
                                             "endpoint", "cluster"}
    assert deathstar["backends"][0]["cluster"] == ""   # local (a global service's remote
    #                                                    backends name their cluster)
    vip = deathstar["cluster_ip"]

    rc, out, _ = await bulkhead(address, "service", "list")
    lines = out.splitlines()
    assert re.match(r"ID\s+Frontend\s+Service Type\s+Backend", lines[0])
    assert re.match(rf"1\s+{re.escape(vip)}:80/TCP\s+ClusterIP\s+1 => {re.escape(ds1)}:80/TCP "
                    r"\(active\)\s+default/deathstar", lines[1]), lines
    assert re.match(rf"\s+2 => {re.escape(ds2)}:80/TCP \(active\)$", lines[2]), lines
    assert re.match(rf"-\s+None:53/UDP\s+Headless\s+1 => {re.escape(dns)}:53/UDP \(active\)",
                    lines[3]), lines
    rc, out, _ = await bulkhead(address, "service", "list", "-n", "kube-system", "-o", "json")
    assert [s["name"] for s in json.loads(out)] == ["dns"]

    rc, out, _ = await bulkhead(address, "service", "get", "default/deathstar")
    assert rc == 0 and f"ClusterIP:        {vip}" in out and "default/deathstar-2" in out
    rc, out, _ = await bulkhead(address, "status", "-o", "json")
    counts = json.loads(out)["counts"]
    assert (counts["services"], counts["service_backends"]) == (2, 3)
    rc, out, _ = await bulkhead(address, "status")
    assert "Services:        2 (3 backends)" in out

    rc, out, _ = await bulkhead(address, "service", "delete", "default/deathstar", "-o", "json")
    assert rc == 0 and json.loads(out)["deleted"] == "default/deathstar"
    rc, _, err = await bulkhead(address, "service", "get", "default/deathstar")
    assert rc == 1
    assert err.strip() == "bulkhead: NOT_FOUND: service default/deathstar does not exist"


async def test_errors_are_one_line_and_exit_1(replicas: ReplicaFactory, tmp_path: Path) -> None:
    replica = await replicas()
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.replace("type: ClusterIP", "type: NodePort"))
    rc, out, err = await bulkhead(replica.address, "service", "apply", "-f", str(bad))
    assert rc == 1 and out == ""
    assert "documents[0].spec.type: NodePort services are not supported (ClusterIP only)" in err
    rc, _, err = await bulkhead(replica.address, "service", "get", "deathstar")
    assert rc == 2 and "expected NAMESPACE/NAME" in err
    rc, _, err = await bulkhead(replica.address, "service", "apply", "-f",
                                str(tmp_path / "missing.yaml"))
    assert rc == 1 and err.startswith("bulkhead: cannot read")
