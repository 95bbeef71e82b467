"""`bulkhead clustermesh connect|disconnect|status`: remote clusters whose nodes, endpoints
and identities reach this cluster's agents."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bulkhead.v1 import clustermesh_pb2, clustermesh_pb2_grpc

from ..output import emit_json, output_flag, table, to_dict


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("clustermesh",
                                                help="connect clusters, mesh status")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    connect = verbs.add_parser("connect", help="connect a remote cluster (its etcd, read-only)")
    connect.add_argument("name", help="the remote cluster's --cluster-name")
    connect.add_argument("--etcd-endpoints", required=True,
                         help="comma-separated endpoints of the remote cluster's etcd")
    connect.add_argument("--etcd-cacert", type=Path, help="CA of the remote etcd (PEM)")
    connect.add_argument("--etcd-cert", type=Path, help="client certificate for it (PEM)")
    connect.add_argument("--etcd-key", type=Path, help="its key (PEM)")
    output_flag(connect)
    connect.set_defaults(run=run_connect)
    disconnect = verbs.add_parser("disconnect",
                                  help="disconnect a remote cluster; its state leaves every "
                                       "agent")
    disconnect.add_argument("name")
    output_flag(disconnect)
    disconnect.set_defaults(run=run_disconnect)
    status = verbs.add_parser("status", help="each remote cluster: ready, last sync, counts")
    output_flag(status)
    status.set_defaults(run=run_status)


def _stub(ctx: Any) -> clustermesh_pb2_grpc.ClusterMeshServiceStub:
    return ctx.stub(clustermesh_pb2_grpc.ClusterMeshServiceStub)


def _pem(path: Path | None, flag: str) -> str:
    if path is None:
        return ""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{flag}: cannot read {path}: {exc}") from None


def run_connect(ctx: Any) -> int:
    a = ctx.args
    remote = _stub(ctx).Connect(clustermesh_pb2.ConnectClusterRequest(
        name=a.name, etcd_endpoints=[e for e in a.etcd_endpoints.split(",") if e],
        etcd_cacert=_pem(a.etcd_cacert, "--etcd-cacert"),
        etcd_cert=_pem(a.etcd_cert, "--etcd-cert"), etcd_key=_pem(a.etcd_key, "--etcd-key")),
        timeout=30)
    if ctx.json:
        emit_json(to_dict(remote))
    else:
        print(f"connected cluster {remote.name} (id {remote.cluster_id}, pod pool "
              f"{remote.pod_pool})")
    return 0


def run_disconnect(ctx: Any) -> int:
    _stub(ctx).Disconnect(clustermesh_pb2.DisconnectClusterRequest(name=ctx.args.name),
                          timeout=30)
    if ctx.json:
        emit_json({"disconnected": ctx.args.name})
    else:
        print(f"disconnected cluster {ctx.args.name}")
    return 0


def summary(status: clustermesh_pb2.ClusterMeshStatusResponse) -> str:
    """The one line `bulkhead status` prints."""
    if not status.remotes:
        return "disabled (no remote cluster connected)"
    ready = [r for r in status.remotes if r.ready]
    line = f"{len(ready)}/{len(status.remotes)} remote clusters ready"
    down = [r.cluster.name for r in status.remotes if not r.ready]
    if down:
        line += f"; not ready: {', '.join(down)}"
    if not status.nodes:
        return line
    if status.nodes_with_all_remotes == status.nodes:
        line += f"; all {status.nodes} nodes are connected to all clusters"
    else:
        line += (f"; {status.nodes_with_all_remotes}/{status.nodes} nodes are connected to "
                 "all clusters")
    return line


def run_status(ctx: Any) -> int:
    status = _stub(ctx).Status(clustermesh_pb2.ClusterMeshStatusRequest(), timeout=10)
    if ctx.json:
        emit_json(to_dict(status))
        return 0
    print(f"Cluster {status.cluster_name} (id {status.cluster_id}): {summary(status)}")
    if not status.remotes:
        return 0
    table(["CLUSTER", "ID", "READY", "NODES", "ENDPOINTS", "IDENTITIES", "LAST SYNC",
           "FAILURES", "LAST ERROR", "LOCAL NODES SYNCED"],
          [(r.cluster.name, r.cluster.cluster_id, "yes" if r.ready else "no", r.nodes,
            r.endpoints, r.identities, r.last_sync or "never", r.failures,
            r.last_error or "-", f"{r.nodes_synced}/{status.nodes}") for r in status.remotes])
    sys.stdout.flush()
    return 0
