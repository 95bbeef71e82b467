"""`bulkhead-lab apply|delete -f`: the Star Wars demo's http-sw-app.yaml played on a lab as
Kubernetes would (Service to the control plane, Deployment as Kubernetes-named pods spread over
the nodes, Pods), idempotent, and removed again."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from integration.lab.lab import LabError
from integration.lab.manifests import ALPHANUMS, app_for, parse_manifest, template_hash
from integration.lab.story import MANIFEST
from integration.labfixture import running_lab

SHARED = Path(__file__).resolve().parents[2] / "shared" / "starwars" / "http-sw-app.yaml"
K8S_NAME = re.compile(rf"deathstar-[{ALPHANUMS}]{{10}}-[{ALPHANUMS}]{{5}}")
EXTRA = """\
apiVersion: v1
kind: Pod
metadata:
  name: probe
  labels: {app: probe}
  annotations: {bulkhead.io/app: name}
spec:
  containers: [{name: c, image: docker.io/library/busybox}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
"""


def test_the_lab_copy_is_the_demo_manifest_unchanged() -> None:
    if not SHARED.exists():
        pytest.skip(f"no {SHARED} beside the repository")
    assert MANIFEST.read_bytes() == SHARED.read_bytes()


def test_the_demo_manifest_parses_into_a_service_a_deployment_and_two_pods() -> None:
    manifest = parse_manifest(MANIFEST.read_text())
    assert manifest.services == [("default", "deathstar")]
    deploy, tie, xwing = manifest.workloads
    assert (deploy.kind, deploy.name, deploy.replicas, deploy.app) == (
        "Deployment", "deathstar", 2, "deathstar")
    assert sorted(deploy.labels) == ["app.kubernetes.io/name=deathstar", "class=deathstar",
                                     "org=empire"]
    assert re.fullmatch(rf"[{ALPHANUMS}]{{10}}", deploy.template_hash)
    assert (tie.kind, tie.name, tie.app) == ("Pod", "tiefighter", "none")
    assert sorted(xwing.labels) == ["app.kubernetes.io/name=xwing", "class=xwing",
                                    "org=alliance"]
    assert manifest.notes == []


def test_the_pod_template_hash_follows_the_template() -> None:
    template = {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"image": "x"}]}}
    assert template_hash(template) == template_hash(json.loads(json.dumps(template)))
    assert template_hash(template) != template_hash({**template, "metadata": {}})


def test_what_a_pod_serves_follows_its_image() -> None:
    for image in ("docker.io/cilium/starwars", "cilium/starwars:v2", "quay.io/cilium/starwars",
                  "docker.io/cilium/starwars@sha256:0123", "localhost:5000/cilium/starwars"):
        assert app_for(image) == "deathstar", image
    for image in ("docker.io/tgraf/netperf", "cilium/starwars-client", "busybox"):
        assert app_for(image) == "none", image


def test_a_bad_manifest_is_refused_naming_every_field() -> None:
    bad = MANIFEST.read_text().replace("replicas: 2", "replicas: -1").replace(
        "name: xwing\n", "name: X_wing\n", 1)
    with pytest.raises(LabError) as err:
        parse_manifest(bad)
    assert "documents[1].spec.replicas: -1 is not a number 0-64" in str(err.value)
    assert "documents[3].metadata.name: 'X_wing' is not a lowercase DNS name" in str(err.value)
    with pytest.raises(LabError, match=r"bulkhead.io/app\]: 'web' is not one of"):
        parse_manifest(EXTRA.replace("app: name}", "app: web}"))


def lab_cli(name: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "integration.lab.cli", "--name", name, *args],
                          input=stdin, capture_output=True, text=True, timeout=300,
                          env=os.environ.copy())


def apply(name: str, verb: str, text: str) -> dict[str, Any]:
    done = lab_cli(name, verb, "-f", "-", "-o", "json", stdin=text)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def service(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "bulkhead"), "service", *args],
                          capture_output=True, text=True, timeout=60, env=os.environ.copy())


@pytest.mark.datapath
def test_apply_and_delete_the_demo_manifest(tmp_path: Path) -> None:
    demo = MANIFEST.read_text()
    with running_lab(tmp_path) as lab:
        # A Service the control plane refuses: nothing is made, the field is named.
        refused = lab_cli(lab.name, "apply", "-f", "-",
                          stdin=demo.replace("type: ClusterIP", "type: NodePort"))
        assert refused.returncode == 1
        assert "documents[0].spec.type: NodePort services are not supported" in refused.stderr
        assert lab.state().pods == {}

        first = apply(lab.name, "apply", demo + "---\n" + EXTRA)
        pods = {p["name"]: p for p in first["pods"]}
        assert all(p["action"] == "created" for p in pods.values())
        deathstars = sorted(n for n in pods if n.startswith("deathstar-"))
        assert len(deathstars) == 2 and all(K8S_NAME.fullmatch(n) for n in deathstars)
        # One template, one hash; the suffixes differ.
        assert len({n.rsplit("-", 1)[0] for n in deathstars}) == 1
        assert sorted(pods) == sorted([*deathstars, "tiefighter", "xwing", "probe"])
        for n in deathstars:
            assert sorted(pods[n]["labels"]) == ["k8s:app.kubernetes.io/name=deathstar",
                                                 "k8s:class=deathstar",
                                                 "k8s:io.kubernetes.pod.namespace=default",
                                                 "k8s:org=empire"]
            assert pods[n]["owner"] == "Deployment default/deathstar"
        # The prefixed label is part of the deathstars' identity, as on Cilium.
        ident = subprocess.run([str(Path(sys.executable).parent / "bulkhead"), "identity", "get",
                                str(pods[deathstars[0]]["identity"]), "-o", "json"],
                               capture_output=True, text=True, timeout=60, env=os.environ.copy())
        assert "k8s:app.kubernetes.io/name=deathstar" in json.loads(ident.stdout)["labels"]
        # Spread over the nodes: a deathstar on each.
        assert {pods[n]["node"] for n in deathstars} == {"n1", "n2"}
        assert any(n.startswith("documents[5]: ConfigMap settings skipped") for n in first["notes"])

        # The Service, with the deathstars as its backends; the ClusterIP answers as the
        # deathstar, the probe (annotation bulkhead.io/app: name) with its name.
        got = service("get", "default/deathstar", "-o", "json")
        assert got.returncode == 0, got.stderr
        svc = json.loads(got.stdout)
        assert sorted(b["endpoint"] for b in svc["backends"]) == [f"default/{n}"
                                                                  for n in deathstars]
        assert first["services"] == [{"namespace": "default", "name": "deathstar",
                                      "cluster_ip": svc["cluster_ip"],
                                      "backends": [f"default/{n}" for n in deathstars]}]
        landed = lab_cli(lab.name, "exec", "tiefighter", "--", "curl", "-s", "-m", "5",
                         "-XPOST", f"http://{svc['cluster_ip']}/v1/request-landing")
        assert landed.stdout.strip() == "Ship landed"
        named = lab_cli(lab.name, "exec", "xwing", "--", "curl", "-s", "-m", "5",
                        f"http://{pods['probe']['ip']}/")
        assert named.stdout.strip() == "probe"
        # An idle pod serves nothing.
        idle = lab_cli(lab.name, "exec", "xwing", "--", "curl", "-s", "-m", "5",
                       f"http://{pods['tiefighter']['ip']}/")
        assert idle.returncode != 0

        # Applying again keeps everything.
        again = apply(lab.name, "apply", demo)
        assert {p["name"]: p["action"] for p in again["pods"]} == {
            n: "unchanged" for n in [*deathstars, "tiefighter", "xwing"]}
        assert again["services"] == first["services"]
        # A kept pod whose labels the file changed says so (Kubernetes would relabel it).
        relabeled = lab_cli(lab.name, "apply", "-f", "-",
                            stdin=demo.replace("org: alliance", "org: rebels"))
        assert relabeled.returncode == 0, relabeled.stderr
        assert re.search(r"pod default/xwing unchanged \(on n\d\); its labels differ",
                         relabeled.stdout)
        assert "pod default/tiefighter unchanged (on n1)\n" in relabeled.stdout

        # replicas 3, then back to 2: one pod added, then one removed; the names stay.
        three = apply(lab.name, "apply", demo.replace("replicas: 2", "replicas: 3"))
        added = [p["name"] for p in three["pods"] if p["action"] == "created"]
        assert len(added) == 1 and K8S_NAME.fullmatch(added[0])
        assert added[0].rsplit("-", 1)[0] == deathstars[0].rsplit("-", 1)[0]
        two = apply(lab.name, "apply", demo)
        assert len([p for p in two["pods"] if p["action"] == "deleted"]) == 1
        now = {p.name: p for p in lab.state().pods.values() if p.name.startswith("deathstar-")}
        assert len(now) == 2 and {p.node for p in now.values()} == {"n1", "n2"}
        assert len(json.loads(service("get", "default/deathstar", "-o", "json").stdout)
                   ["backends"]) == 2

        # delete -f removes the pods and the service; a second delete finds nothing to do.
        gone = apply(lab.name, "delete", demo + "---\n" + EXTRA)
        assert sorted(p["name"] for p in gone["pods"]) == sorted(
            [*now, "tiefighter", "xwing", "probe"])
        assert gone["services"] == [{"namespace": "default", "name": "deathstar",
                                     "action": "deleted"}]
        assert lab.state().pods == {}
        missing = service("get", "default/deathstar")
        assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
        twice = apply(lab.name, "delete", demo)
        assert twice["pods"] == [] and twice["services"][0]["action"] == "not_found"
