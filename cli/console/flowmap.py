"""The service map: workloads grouped by their app/class labels, observed flows as edges.

Pure functions over the JSON form of flows (`cli.commands.observe.as_json`, what the browser
gets too) and of endpoints, so the grouping and the verdict of an edge are tested without a
cluster or a browser.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

APP_KEYS = ("app", "app.kubernetes.io/name", "k8s-app", "name")
CLASS_KEY = "class"
NAMESPACE_KEY = "io.kubernetes.pod.namespace"
RECENT_PER_EDGE = 20
"""Flows kept per edge for its panel (newest first)."""


def label_map(labels: Iterable[str]) -> dict[str, str]:
    """`source:key=value` labels as key -> value (the source dropped; `reserved:world` ->
    `reserved:world` -> "")."""
    out: dict[str, str] = {}
    for label in labels:
        source, _, rest = label.partition(":")
        if source == "reserved":
            out[f"reserved:{rest}"] = ""
            continue
        key, _, value = (rest if rest else source).partition("=")
        out[key] = value
    return out


def group_of(namespace: str, labels: Iterable[str], fallback: str) -> dict[str, str]:
    """The workload a pod (or a flow's peer) belongs to: its app label and its class label,
    in its namespace; a reserved identity (world, host, ...) by its name; else `fallback`
    (the pod's name or the IP)."""
    found = label_map(labels)
    reserved = sorted(k.removeprefix("reserved:") for k in found if k.startswith("reserved:"))
    namespace = namespace or found.get(NAMESPACE_KEY, "")
    app = next((found[k] for k in APP_KEYS if found.get(k)), "")
    cls = found.get(CLASS_KEY, "")
    name = app or cls
    if app and cls and cls != app:
        name = f"{app} ({cls})"
    if not name:
        name = reserved[0] if reserved else fallback
        namespace = "" if reserved else namespace
    return {"id": f"{namespace}/{name}" if namespace else name, "name": name,
            "namespace": namespace}


def peer_group(peer: dict[str, Any]) -> dict[str, str]:
    return group_of(peer.get("namespace", ""), peer.get("labels", ()),
                    peer.get("pod") or peer.get("ip") or f"identity {peer.get('identity', 0)}")


def request_of(flow: dict[str, Any]) -> str:
    """`POST /v1/request-landing` for an L7 request flow, else ""."""
    l7 = flow.get("l7") or {}
    http = l7.get("http") or {}     # a DNS flow of the DNS proxy has `dns` instead
    if l7.get("type") != "request" or not http.get("method"):
        return ""
    url = http.get("url", "")
    path = "/" + url.split("://", 1)[-1].partition("/")[2] if "://" in url else url
    return f"{http['method']} {path}"


def _decisive(flow: dict[str, Any]) -> bool:
    """Whether a flow tells how the connection ended: a drop anywhere, an ingress verdict
    (the destination's side, after the source's egress forwarded it) or an L7 request."""
    return (flow["verdict"] == "DROPPED" or flow.get("direction") == "ingress"
            or flow.get("type") == "L7")


def build_map(flows: Sequence[dict[str, Any]], endpoints: Sequence[dict[str, Any]],
              namespace: str = "") -> dict[str, Any]:
    """Groups (with their pods) and edges (counts, ports, L7 requests, recent flows, verdict)
    of the flows, oldest first; `namespace` keeps the groups of that namespace and the edges
    that touch one."""
    groups: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        group = group_of(ep["namespace"], ep["labels"], ep["name"])
        entry = groups.setdefault(group["id"], {**group, "pods": []})
        entry["pods"].append(f"{ep['namespace']}/{ep['name']}")
    edges: dict[tuple[str, str], dict[str, Any]] = {}
    for flow in sorted(flows, key=lambda f: f["time"]):  # the relay merges nodes' streams
        l7 = flow.get("l7")
        if l7 is not None and l7.get("type") != "request":
            continue  # a response goes back along its request's edge
        src, dst = peer_group(flow["source"]), peer_group(flow["destination"])
        for group in (src, dst):
            groups.setdefault(group["id"], {**group, "pods": []})
        edge = edges.setdefault((src["id"], dst["id"]), {
            "id": f"{src['id']}->{dst['id']}", "source": src["id"], "target": dst["id"],
            "forwarded": 0, "dropped": 0, "ports": [], "l7": {}, "flows": [],
            "verdict": "", "last": ""})
        edge["forwarded" if flow["verdict"] == "FORWARDED" else "dropped"] += 1
        port = f"{flow['destination'].get('port', 0)}/{flow.get('protocol') or 'TCP'}"
        if port not in edge["ports"]:
            edge["ports"].append(port)
        if request := request_of(flow):
            counts = edge["l7"].setdefault(request, {"request": request, "forwarded": 0,
                                                     "dropped": 0})
            counts["forwarded" if flow["verdict"] == "FORWARDED" else "dropped"] += 1
        if _decisive(flow) or not edge["verdict"]:
            edge["verdict"] = flow["verdict"]
        edge["last"] = flow["time"]
        edge["flows"].insert(0, flow)
        del edge["flows"][RECENT_PER_EDGE:]
    kept = [e for e in edges.values() if not namespace or namespace in (
        groups[e["source"]]["namespace"], groups[e["target"]]["namespace"])]
    wanted = {g for e in kept for g in (e["source"], e["target"])}
    shown = [g for g in groups.values() if not namespace or g["namespace"] == namespace
             or g["id"] in wanted]
    for edge in kept:
        edge["l7"] = sorted(edge["l7"].values(), key=lambda c: c["request"])
        edge["ports"].sort()
    return {"namespace": namespace,
            "namespaces": sorted({g["namespace"] for g in groups.values() if g["namespace"]}),
            "groups": sorted(shown, key=lambda g: g["id"]),
            "edges": sorted(kept, key=lambda e: e["id"])}
