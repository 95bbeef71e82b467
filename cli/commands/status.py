"""`bulkhead status`: in the spirit of `cilium status` plus `hubble status`."""

from __future__ import annotations

import argparse
from typing import Any

import grpc

from bulkhead.reserved import RESERVED_BY_ID
from bulkhead.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    clustermesh_pb2,
    clustermesh_pb2_grpc,
    observer_pb2,
    observer_pb2_grpc,
)

from ..output import emit_json, output_flag, to_dict
from . import clustermesh

BAD_RECORDS_PRINTED = 20


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "status", help="replicas, etcd, nodes, endpoints, identities, policies, flows")
    output_flag(p)
    p.set_defaults(run=run)


def run(ctx: Any) -> int:
    status = ctx.stub(admin_pb2_grpc.AdminServiceStub).Status(admin_pb2.StatusRequest(),
                                                              timeout=10)
    flows: observer_pb2.ObserverStatusResponse | None = None
    try:
        flows = ctx.stub(observer_pb2_grpc.ObserverServiceStub).ObserverStatus(
            observer_pb2.ObserverStatusRequest(), timeout=10)
    except grpc.RpcError:
        flows = None
    mesh: clustermesh_pb2.ClusterMeshStatusResponse | None = None
    try:
        mesh = ctx.stub(clustermesh_pb2_grpc.ClusterMeshServiceStub).Status(
            clustermesh_pb2.ClusterMeshStatusRequest(), timeout=10)
    except grpc.RpcError:
        mesh = None
    if ctx.json:
        data = to_dict(status)
        data["flows"] = to_dict(flows) if flows is not None else None
        data["clustermesh"] = to_dict(mesh) if mesh is not None else None
        emit_json(data)
        return 0 if status.etcd.healthy else 1
    counts = status.counts
    etcd = status.etcd
    health = (f"ok, revision {etcd.revision}, etcd {etcd.version}" if etcd.healthy
              else f"UNHEALTHY: {etcd.error}")
    others = [r for r in status.replicas if r != status.replica_id]
    replicas = f"{len(status.replicas) or 1} replica(s): {status.replica_id} (this)"
    replicas += "".join(f", {r}" for r in others)
    print(f"{'Cluster:':<17}{status.cluster_name} (id {status.cluster_id})")
    print(f"{'Control plane:':<17}{replicas}, bulkhead {status.version}")
    print(f"{'etcd:':<17}{health} [{etcd.endpoints}]")
    if status.HasField("embedded_etcd"):
        embedded = status.embedded_etcd
        line = (f"running, pid {embedded.pid}" if embedded.running
                else "DOWN, being restarted")
        line += f", {embedded.restarts} restart(s)"
        if embedded.last_exit:
            line += f", last died: {embedded.last_exit}"
        print(f"{'Embedded etcd:':<17}{line} [{embedded.data_dir}]")
    nodes = counts.get("nodes", 0)
    if "subscribers" in counts:
        print(f"{'Nodes:':<17}{counts['subscribers']}/{nodes} connected, max lag "
              f"{counts.get('max_lag_revisions', 0)} revisions")
    else:
        print(f"{'Nodes:':<17}{nodes}")
    if "endpoints" in counts:
        print(f"{'Endpoints:':<17}{counts['endpoints']}")
    if "identities" in counts:
        # `identity list` shows the reserved identities too: say what this number counts.
        print(f"{'Identities:':<17}{counts['identities']} allocated (plus "
              f"{len(RESERVED_BY_ID)} reserved; `bulkhead identity list` shows both)")
    if "policies" in counts:
        print(f"{'Policies:':<17}{counts['policies']}")
    if "services" in counts:
        print(f"{'Services:':<17}{counts['services']} "
              f"({counts.get('service_backends', 0)} backends)")
    if status.bad_records:
        total = counts.get("bad_records", len(status.bad_records))
        print(f"{'Bad records:':<17}{total} skipped, undecodable (fix or delete them in etcd)")
        for bad in status.bad_records[:BAD_RECORDS_PRINTED]:
            print(f"{'':<17}{bad.key} ({bad.kind}): {bad.reason}")
        if total > BAD_RECORDS_PRINTED:
            print(f"{'':<17}... and {total - BAD_RECORDS_PRINTED} more (the log names each)")
    if mesh is not None:
        print(f"{'ClusterMesh:':<17}{clustermesh.summary(mesh)}")
    if flows is not None:
        unreachable = [n.node for n in flows.nodes if not n.reachable]
        line = (f"{flows.flows_held}/{flows.flows_max} ({flows.flows_per_second:.2f} flows/s) "
                f"from {len(flows.nodes) - len(unreachable)}/{len(flows.nodes)} agents")
        if unreachable:
            line += f"; unreachable: {', '.join(unreachable)}"
        print(f"{'Flows:':<17}{line}")
    return 0 if etcd.healthy else 1
