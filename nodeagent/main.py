"""`bulkhead-agent`: registers the node, subscribes, and hands what it receives to a datapath.

`--datapath=bpf` (the default) enforces with the eBPF datapath and serves the local API on
`--socket` (see nodeagent.agent). `--datapath=simulated` keeps the received state in memory
only (scale tests, benchmarks, or to see what a node would receive): SIGUSR1 (and exit) writes
it as JSON to `--state-file`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import sys
from pathlib import Path

import grpc

from bulkhead import gctuning, log
from bulkhead.tls import INSECURE_WARNING
from nodeagent import nodelabels
from nodeagent.credentials import CredentialError, NodeCredentials, join_server, read_token
from nodeagent.dns.listen import DEFAULT_LISTEN as DEFAULT_DNS_LISTEN
from nodeagent.dns.listen import DEFAULT_REDIRECT_PORT as DEFAULT_DNS_PROXY_PORT
from nodeagent.dns.listen import parse_listen
from nodeagent.sink import DatapathSink, NullSink
from nodeagent.subscription.client import SubscriptionClient


def addresses(value: str) -> list[str]:
    """``--controlplane``: comma-separated HOST:PORT addresses, blanks dropped."""
    return [a.strip() for a in value.split(",") if a.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bulkhead-agent", description=__doc__)
    p.add_argument("--node", required=True, help="this node's name")
    p.add_argument("--controlplane", required=True, type=addresses,
                   help="comma-separated control-plane HOST:PORT addresses (failover order)")
    p.add_argument("--underlay-ip", required=True, help="this node's underlay IPv4")
    p.add_argument("--node-labels", type=nodelabels.flag, default={},
                   help="labels of this node, KEY=VALUE[,KEY=VALUE...], which host policies "
                        "select it by (kubernetes.io/os and kubernetes.io/arch are added; the "
                        "control plane adds kubernetes.io/hostname=NODE)")
    p.add_argument("--datapath", choices=["simulated", "bpf"], default="bpf")
    p.add_argument("--state-file", type=Path,
                   help="simulated: write the received state here on SIGUSR1 and at exit")
    p.add_argument("--ack-interval", type=float, default=0.05,
                   help="seconds between acks (acks are coalesced)")
    p.add_argument("--socket", type=Path,
                   help="bpf: local API unix socket (default /run/bulkhead/agent-NODE.sock)")
    p.add_argument("--netns",
                   help="bpf: the node's network namespace (name or path; default: this one)")
    p.add_argument("--bpf-pin-root", type=Path, default=Path("/sys/fs/bpf/bulkhead"),
                   help="bpf: maps are pinned under DIR/NODE/vLAYOUT (default %(default)s)")
    p.add_argument("--flows-max", type=int, default=4095, help="bpf: flows held (default 4095)")
    p.add_argument("--ct-gc-interval", type=float, default=30.0,
                   help="bpf: seconds between conntrack garbage collections")
    p.add_argument("--api-listen", default="127.0.0.1:0",
                   help="bpf: also serve the local API on this TCP HOST:PORT for the control "
                        "plane's flow relay (registered as the node's agent address; port 0 = "
                        "any free port; 'none' = unix socket only)")
    p.add_argument("--metrics-listen",
                   help="bpf: serve Prometheus metrics on HOST:PORT at /metrics (port 0 = any "
                        "free port, logged at start; default: off)")
    p.add_argument("--dns-listen", default=DEFAULT_DNS_LISTEN,
                   help="bpf: serve cluster DNS (NAME.NS.svc.cluster.local) to the node's pods "
                        "on this IPv4:PORT in the node namespace, UDP and TCP (default "
                        "%(default)s, the pods' gateway; 'none' = off)")
    p.add_argument("--dns-upstream", default="none",
                   help="bpf: the resolver the node uses, IPv4[:PORT] reached from the node "
                        "namespace: names outside the cluster are forwarded there through the "
                        "DNS proxy (rules.dns enforced, toFQDNs addresses learnt); 'none' "
                        "(default) = they get NXDOMAIN")
    p.add_argument("--dns-proxy-port", type=int, default=DEFAULT_DNS_PROXY_PORT,
                   help="bpf: the DNS proxy's transparent port (127.0.0.1 in the node "
                        "namespace, UDP and TCP): port 53 of pods under rules.dns is "
                        "redirected there whatever server they ask, and forwarded to that "
                        "server (as Cilium does); 0 = only queries to --dns-listen are seen "
                        "(default %(default)s)")
    p.add_argument("--tofqdns-min-ttl", type=int, default=0, metavar="SECONDS",
                   help="bpf: keep learnt addresses at least this long (Cilium's flag; "
                        "default 0 = the answer's TTL)")
    p.add_argument("--fqdn-state-file", type=Path,
                   help="bpf: where the FQDN cache is kept across restarts "
                        "(default: the socket path with .fqdn.json)")
    p.add_argument("--proxy-port", type=int, default=15001,
                   help="bpf: the L7 HTTP proxy's port in the node namespace (127.0.0.1; the "
                        "proxy runs as its own process); 0 = no proxy, L7 rules then deny "
                        "(default %(default)s)")
    p.add_argument("--clustermesh-sync-grace", type=float, default=30.0, metavar="SECONDS",
                   help="bpf: while a connected remote cluster's state has not reached this "
                        "node yet, let its identities that no policy entry matches yet in "
                        "from the overlay, for at most this long after learning of the "
                        "remote (logged when it runs out); 0 = off (default %(default)s)")
    p.add_argument("--endpoints-file", type=Path,
                   help="bpf: where endpoint names are kept across restarts "
                        "(default: the socket path with .endpoints.json)")
    p.add_argument("--insecure", action="store_true",
                   help="DEVELOPMENT ONLY: plaintext to a control plane started with "
                        "--insecure and a TCP API that answers anyone; warns at start. "
                        "Default: mutual TLS with this node's certificate (from --tls-dir, "
                        "else from a join with --join-token/--join-token-file; renewed before "
                        "it expires); docs/security.md")
    p.add_argument("--tls", action="store_true", help=argparse.SUPPRESS)
    # --tls: stage 1's opt-in, now the default; accepted as a no-op.
    p.add_argument("--tls-ca", type=Path,
                   help="the cluster CA (PEM; the control plane's STATE_DIR/tls/ca.crt): "
                        "checks the join port's certificate")
    p.add_argument("--tls-dir", type=Path,
                   help="where the node key and certificate are kept, mode 0600 (default "
                        "/var/lib/bulkhead/agent-NODE)")
    p.add_argument("--join-token", help="a bootstrap token (`bulkhead node token create`); "
                                        "visible in the process list: prefer --join-token-file")
    p.add_argument("--join-token-file", type=Path, help="a file holding the bootstrap token")
    p.add_argument("--join-server",
                   help="the control plane's join HOST:PORT (default: the first --controlplane "
                        "host, its port + 1)")
    return p


def node_credentials(args: argparse.Namespace) -> NodeCredentials | None:
    """The node's certificate holder (obtained, joining if needed, at start); None only with
    `--insecure`."""
    if args.insecure:
        return None
    return NodeCredentials(
        args.node, args.tls_dir or Path(f"/var/lib/bulkhead/agent-{args.node}"), args.tls_ca,
        join_server(args.controlplane, args.join_server),
        read_token(args.join_token, args.join_token_file))


def write_state(client: SubscriptionClient, path: Path | None) -> None:
    if path is None:
        return
    data = client.state.dump()
    data["stats"] = vars(client.stats)
    data["synced"] = client.synced.is_set()
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)


async def run(args: argparse.Namespace, sink: DatapathSink) -> None:
    _log = log.get("nodeagent")
    credentials = node_credentials(args)
    if credentials is not None:
        await credentials.obtain()
    client = SubscriptionClient(args.node, args.controlplane, underlay_ip=args.underlay_ip,
                                sink=sink, capabilities=[f"datapath:{args.datapath}"],
                                ack_interval=args.ack_interval,
                                node_labels=nodelabels.registration_labels(args.node_labels),
                                credentials=credentials.current if credentials else None)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, write_state, client, args.state_file)
    task = asyncio.create_task(client.run())
    renewing = None
    if credentials is not None:
        renewing = asyncio.create_task(credentials.keep_renewed(args.controlplane,
                                                                client.use_credentials))
    _log.info("agent started", controlplane=args.controlplane, datapath=args.datapath,
              tls=credentials is not None)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if renewing is not None:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
    write_state(client, args.state_file)
    _log.info("agent stopped")


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        ipaddress.IPv4Address(args.underlay_ip)
    except ValueError:
        print(f"bulkhead-agent: --underlay-ip must be an IPv4 address, got {args.underlay_ip!r}",
              file=sys.stderr)
        sys.exit(2)
    if not 0 <= args.dns_proxy_port <= 65535:
        print(f"bulkhead-agent: --dns-proxy-port must be 0..65535, got {args.dns_proxy_port}",
              file=sys.stderr)
        sys.exit(2)
    if args.dns_proxy_port and args.dns_proxy_port == args.proxy_port:
        print("bulkhead-agent: --dns-proxy-port must differ from --proxy-port, both are "
              f"{args.proxy_port}", file=sys.stderr)
        sys.exit(2)
    if not 0 <= args.proxy_port <= 65535:
        print(f"bulkhead-agent: --proxy-port must be 0..65535, got {args.proxy_port}",
              file=sys.stderr)
        sys.exit(2)
    try:
        args.dns_listen = parse_listen(args.dns_listen)
        args.dns_upstream = parse_listen(args.dns_upstream, "--dns-upstream")
    except ValueError as exc:
        print(f"bulkhead-agent: {exc}", file=sys.stderr)
        sys.exit(2)
    if args.tofqdns_min_ttl < 0:
        print(f"bulkhead-agent: --tofqdns-min-ttl must be >= 0, got {args.tofqdns_min_ttl}",
              file=sys.stderr)
        sys.exit(2)
    if not 0 <= args.clustermesh_sync_grace < float("inf"):
        print("bulkhead-agent: --clustermesh-sync-grace must be 0 (off) or a positive number "
              f"of seconds, got {args.clustermesh_sync_grace}", file=sys.stderr)
        sys.exit(2)
    if (args.join_token or args.join_token_file or args.tls_ca or args.tls_dir
            or args.join_server or args.tls) and args.insecure:
        print("bulkhead-agent: --insecure and --tls/--tls-ca/--tls-dir/--join-token/"
              "--join-token-file/--join-server exclude each other", file=sys.stderr)
        sys.exit(2)
    log.configure("agent", node=args.node)
    if args.insecure:
        print(f"bulkhead-agent: {INSECURE_WARNING}", file=sys.stderr, flush=True)
        log.get("nodeagent").warning("insecure mode: plaintext, no authorization "
                                     "(development only)", flag="--insecure")
    gctuning.tune_for_server()
    if args.datapath == "bpf":
        run_bpf(args)
        return
    sink: DatapathSink = NullSink()
    try:
        asyncio.run(run(args, sink))
    except (ValueError, OSError, grpc.RpcError) as exc:  # no certificate, failed join
        print(f"bulkhead-agent: {_one_line(exc)}", file=sys.stderr)
        sys.exit(1)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"join refused: {exc.code().name}: {exc.details()}"
    return str(exc)


def run_bpf(args: argparse.Namespace) -> None:
    """Refuses to start, saying what is missing, when this host cannot run BPF programs."""
    from nodeagent.datapath.loader import DatapathUnavailable, check_environment

    try:
        check_environment(args.bpf_pin_root)
    except DatapathUnavailable as exc:
        print(f"bulkhead-agent: --datapath=bpf: {exc} (use --datapath=simulated for tests "
              "without BPF)", file=sys.stderr)
        sys.exit(2)
    if args.netns and not os.path.exists(args.netns if args.netns.startswith("/")
                                         else f"/var/run/netns/{args.netns}"):
        print(f"bulkhead-agent: --netns {args.netns}: no such network namespace", file=sys.stderr)
        sys.exit(2)
    from nodeagent import agent

    settings = agent.Settings(
        node=args.node,
        controlplane=args.controlplane,
        underlay_ip=args.underlay_ip, socket=args.socket or agent.default_socket(args.node),
        netns=args.netns, pin_root=args.bpf_pin_root, flows_max=args.flows_max,
        ct_gc_interval=args.ct_gc_interval, ack_interval=args.ack_interval,
        endpoints_file=args.endpoints_file,
        api_listen=None if args.api_listen in ("", "none") else args.api_listen,
        metrics_listen=args.metrics_listen or None, dns_listen=args.dns_listen,
        proxy_port=args.proxy_port, dns_upstream=args.dns_upstream,
        dns_proxy_port=args.dns_proxy_port,
        fqdn_min_ttl=args.tofqdns_min_ttl, fqdn_file=args.fqdn_state_file,
        node_labels=nodelabels.registration_labels(args.node_labels),
        mesh_sync_grace=args.clustermesh_sync_grace,
        credentials=node_credentials(args))
    try:
        asyncio.run(agent.run(settings))
    except CredentialError as exc:  # no certificate and no way to get one; nothing changed
        print(f"bulkhead-agent: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
