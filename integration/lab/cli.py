"""`bulkhead-lab`: run a Bulkhead cluster on this machine, nodes and pods as namespaces."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import grpc

from bulkhead.v1 import admin_pb2, admin_pb2_grpc
from cli.commands.endpoint import IPV4, LABELS
from cli.helpformat import Parser
from cli.output import emit_json, output_flag, table

from . import credentials, manifests, processes
from .lab import Lab, LabError
from .state import LabState


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="bulkhead-lab", description=__doc__)
    p.add_argument("--name", default=os.environ.get("BULKHEAD_LAB", "default"),
                   help="lab name (default: $BULKHEAD_LAB or 'default')")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    up = sub.add_parser("up", help="create (or complete) the lab")
    up.add_argument("--nodes", type=int, default=2)
    up.add_argument("--datapath", choices=["bpf", "none"], default="bpf",
                    help="none: plain kernel routing over VXLAN, no Bulkhead programs")
    up.add_argument("--clusters", type=int, default=1,
                    help="clusters c1..cN (ids 1..N), each with its own etcd and control "
                         "plane and --nodes nodes, connected both ways (default 1: one "
                         "cluster as before)")
    up.add_argument("--world", action="store_true",
                    help="also a world namespace on the underlay: a DNS server (the agents' "
                         "--dns-upstream) for api.world.test, other.world.test and "
                         "www.world.test, and web servers behind them (FQDN policies)")
    up.set_defaults(run=cmd_up)
    sub.add_parser("down", help="remove every namespace, pin and process of the lab"
                   ).set_defaults(run=cmd_down)
    status = sub.add_parser("status", help="what runs and what is there")
    output_flag(status)
    status.set_defaults(run=cmd_status)
    pod = sub.add_parser("pod", help="pods").add_subparsers(dest="verb", metavar="VERB",
                                                            required=True)
    create = pod.add_parser("create", help="a pod namespace, added through the node's agent")
    create.add_argument("pod")
    create.add_argument("--node", required=True)
    create.add_argument("--cluster", default="",
                        help="with `up --clusters N`: the node's cluster (default c1)")
    create.add_argument("--namespace", "-n", default="default")
    create.add_argument("--labels", default="", help="k=v,... (become k8s: labels)")
    create.add_argument("--serve", default="", help="ports to answer TCP/HTTP and UDP on")
    create.add_argument("--app", choices=["name", "deathstar"], default="name",
                        help="what --serve answers: the pod's name, or the deathstar API")
    output_flag(create)
    create.set_defaults(run=cmd_pod_create)
    ls = pod.add_parser("list", help="pods with node, IP, identity and labels")
    output_flag(ls)
    ls.set_defaults(run=cmd_pod_list)
    delete = pod.add_parser("delete", help="remove a pod (its endpoint, then its namespace)")
    delete.add_argument("pod")
    output_flag(delete)
    delete.set_defaults(run=cmd_pod_delete)
    for verb, text in (("apply", "Services, Deployments and Pods of a Kubernetes YAML file "
                                 "(idempotent)"),
                       ("delete", "remove the pods and services of a Kubernetes YAML file")):
        mp = sub.add_parser(verb, help=text)
        mp.add_argument("-f", "--filename", required=True, help="YAML file ('-' for stdin)")
        output_flag(mp)
        mp.set_defaults(run=cmd_manifest)
    ex = sub.add_parser("exec", help="run a command in a pod: exec POD -- CMD...")
    ex.add_argument("pod")
    ex.add_argument("argv", nargs=argparse.REMAINDER)
    ex.set_defaults(run=cmd_exec)
    return p


def cmd_up(lab: Lab, args: argparse.Namespace) -> int:
    state = lab.up(args.nodes, args.datapath, args.clusters, with_world=args.world)
    first = credentials.plane(state).cluster
    for cluster in state.clusters.values():
        # `bulkhead` finds the first cluster by itself; another one needs its own credential.
        flags = "" if cluster.name == first else \
            " " + " ".join(credentials.plane(state, cluster.name).cli_flags())
        print(f"cluster {cluster.name} (id {cluster.id}): control plane {cluster.server}, "
              f"etcd {cluster.etcd}  (`bulkhead{flags} clustermesh status`)")
    if state.controlplane:
        print(f"control plane: {state.controlplane}  (`bulkhead status`)")
    return 0


def cmd_down(lab: Lab, args: argparse.Namespace) -> int:
    lab.down()
    return 0


def _pod_row(pod: Any) -> dict[str, Any]:
    cluster, _, node = pod.node.rpartition("/")   # `c2/n1` in a lab of several clusters
    return {"name": pod.name, "namespace": pod.namespace, "node": node, "cluster": cluster,
            "ip": pod.ip, "identity": pod.identity, "labels": sorted(pod.labels)}


def cmd_pod_create(lab: Lab, args: argparse.Namespace) -> int:
    labels = [lab_ for lab_ in args.labels.split(",") if lab_]
    serve = [p for p in args.serve.split(",") if p]
    pod = lab.pod_create(args.pod, args.node, args.namespace, labels, serve, args.app,
                         cluster=args.cluster)
    if args.output == "json":
        emit_json(_pod_row(pod))
    else:
        print(f"pod {pod.namespace}/{pod.name} on {pod.node}: {pod.ip} "
              f"(identity {pod.identity})")
    return 0


def cmd_pod_list(lab: Lab, args: argparse.Namespace) -> int:
    pods = [_pod_row(p) for p in lab.state().pods.values()]
    if args.output == "json":
        emit_json(pods)
    else:
        clusters = any(p["cluster"] for p in pods)
        table(["POD", *(["CLUSTER"] if clusters else []), "NODE", IPV4, "IDENTITY", LABELS],
              [(f"{p['namespace']}/{p['name']}", *([p["cluster"]] if clusters else []),
                p["node"], p["ip"], p["identity"], p["labels"]) for p in pods])
    return 0


def cmd_pod_delete(lab: Lab, args: argparse.Namespace) -> int:
    pod = lab.state().pods.get(args.pod)
    lab.pod_delete(args.pod)   # refuses an unknown pod
    assert pod is not None
    if args.output == "json":
        emit_json({"deleted": f"{pod.namespace}/{pod.name}", "node": pod.node, "ip": pod.ip,
                   "identity": pod.identity})
    else:
        print(f"pod {pod.namespace}/{pod.name} deleted from {pod.node} ({pod.ip}, identity "
              f"{pod.identity}): its endpoint and network namespace are gone")
    return 0


def cmd_manifest(lab: Lab, args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.filename == "-" else Path(args.filename).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise LabError(f"cannot read {args.filename}: {exc}") from None
    manifest = manifests.parse_manifest(text)
    as_json = args.output == "json"
    for note in manifest.notes:
        print(f"note: {note}", file=sys.stderr)

    def say(line: str) -> None:
        print(line, file=sys.stderr if as_json else sys.stdout, flush=True)

    applier = manifests.Applier(lab, say)
    result = applier.apply(manifest) if args.command == "apply" else applier.delete(manifest)
    if as_json:
        emit_json(result)
    return 0


def cmd_exec(lab: Lab, args: argparse.Namespace) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise LabError("exec needs a command: bulkhead-lab exec POD -- CMD...")
    return lab.exec(args.pod, argv)


def _pod_cidrs(state: LabState) -> dict[tuple[str, str], str]:
    """(cluster, node name) → pod CIDR as each control plane handed them out (a bpf lab's nodes
    get theirs at registration; the lab's own state has them only for `--datapath none`); a
    control plane that does not answer leaves its nodes' out."""
    cidrs = {}
    for plane in credentials.planes(state):
        if not plane.address:
            continue
        try:
            with plane.channel() as channel:
                nodes = admin_pb2_grpc.AdminServiceStub(channel).ListNodes(
                    admin_pb2.ListNodesRequest(), timeout=5).nodes
        except grpc.RpcError:
            continue
        cidrs.update({(plane.cluster, n.name): n.pod_cidr for n in nodes})
    return cidrs


def cmd_status(lab: Lab, args: argparse.Namespace) -> int:
    state = lab.state()
    cidrs = _pod_cidrs(state) if state.datapath != "none" else {}
    nodes = [{**asdict(n), "pod_cidr": n.pod_cidr or cidrs.get((n.cluster, n.name), ""),
              "agent_running": processes.alive(n.agent_pid)} for n in state.nodes.values()]
    clusters = [{"name": c.name, "id": c.id, "server": c.server, "pid": c.pid,
                 "running": processes.alive(c.pid), "etcd": c.etcd, "etcd_pid": c.etcd_pid,
                 "pod_pool": c.pool} for c in state.clusters.values()]
    summary = {"name": state.name, "datapath": state.datapath,
               "controlplane": state.controlplane,
               "controlplane_running": processes.alive(state.controlplane_pid),
               "nodes": nodes, "pods": [_pod_row(p) for p in state.pods.values()],
               "clusters": clusters}
    if args.output == "json":
        emit_json(summary)
        return 0
    running = "running" if summary["controlplane_running"] else "NOT RUNNING"
    print(f"lab {state.name}: datapath {state.datapath}")
    if state.datapath != "none" and not state.clusters:
        print(f"control plane {state.controlplane}: {running}")
    for c in clusters:
        print(f"cluster {c['name']} (id {c['id']}): control plane {c['server']} "
              f"{'running' if c['running'] else 'NOT RUNNING'}, etcd {c['etcd']}")
    table(["NODE", "NAMESPACE", "UNDERLAY IP", "POD CIDR", "AGENT"],
          [(f"{n['cluster']}/{n['name']}" if n["cluster"] else n["name"], n["netns"],
            n["underlay_ip"], n["pod_cidr"] or "-",
            "-" if state.datapath == "none" else
            ("running" if n["agent_running"] else "NOT RUNNING")) for n in nodes])
    print(f"{len(state.pods)} pods (`bulkhead-lab pod list`)")
    return 0


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if os.geteuid() != 0:
        print("bulkhead-lab: must run as root (network namespaces, BPF)", file=sys.stderr)
        sys.exit(2)
    lab = Lab(args.name)
    try:
        code = args.run(lab, args)
    except LabError as exc:
        print(f"bulkhead-lab: {exc}", file=sys.stderr)
        code = 1
    except Exception as exc:  # grpc errors from the agent, netlink failures
        details = exc.details() if hasattr(exc, "details") else str(exc)
        print(f"bulkhead-lab: {details}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
