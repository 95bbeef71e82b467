"""`bulkhead status`."""

from __future__ import annotations

import argparse
from typing import Any

from bulkhead.v1 import admin_pb2, admin_pb2_grpc

from ..output import emit_json, output_flag, to_dict


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("status", help="control plane, etcd and counts")
    output_flag(p)
    p.set_defaults(run=run)


def run(ctx: Any) -> int:
    status = ctx.stub(admin_pb2_grpc.AdminServiceStub).Status(admin_pb2.StatusRequest(),
                                                              timeout=10)
    if ctx.json:
        emit_json(to_dict(status))
        return 0 if status.etcd.healthy else 1
    etcd = status.etcd
    health = (f"ok   revision {etcd.revision}, etcd {etcd.version}" if etcd.healthy
              else f"UNHEALTHY  {etcd.error}")
    print(f"Control plane:   {status.replica_id} (bulkhead {status.version})")
    print(f"Cluster:         {status.cluster_name} (id {status.cluster_id})")
    print(f"etcd:            {health}   [{etcd.endpoints}]")
    for name in ("nodes", "endpoints", "identities", "ipcache", "policies", "subscribers"):
        if name in status.counts:
            print(f"{name.capitalize() + ':':<17}{status.counts[name]}")
    if "max_lag_revisions" in status.counts:
        print(f"{'Max agent lag:':<17}{status.counts['max_lag_revisions']} revisions")
    return 0 if etcd.healthy else 1
