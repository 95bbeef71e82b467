"""Control-plane flags and the settings object the rest of the process reads."""

from __future__ import annotations

import argparse
import re
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bulkhead.defaults import DEFAULT_LISTEN, DEFAULT_STATE_DIR
from controlplane.identity.labels import MAX_LABEL_LENGTH, MAX_LABELS
from controlplane.nodes.validate import DNS_LABEL
from controlplane.servicestore.allocation import ServiceRange


@dataclass
class Config:
    listen: str = DEFAULT_LISTEN
    unix_socket: str | None = None
    metrics_listen: str | None = None
    etcd_endpoints: list[str] = field(default_factory=list)  # empty: embedded
    etcd_cacert: Path | None = None
    etcd_cert: Path | None = None
    etcd_key: Path | None = None
    state_dir: Path = DEFAULT_STATE_DIR
    cluster_name: str = "default"
    cluster_id: int = 0
    cluster_pool: str = "10.0.0.0/8"
    node_mask: int = 24
    service_cidr: str = "10.96.0.0/12"
    node_ttl: int = 15
    identity_gc_grace: float = 60.0
    identity_range: tuple[int, int] | None = None
    identity_max_labels: int = MAX_LABELS
    identity_max_label_bytes: int = 8 << 10
    identity_max_total_label_bytes: int = 64 << 20
    policy_map_max: int = 16384
    subscription_history: float = 300.0
    etcd_compaction_retention: str = "1h"
    subscription_queue_bytes: int = 16 << 20
    bookmark_interval: float = 30.0
    subscription_status_interval: float = 1.0
    subscription_max_linger: float = 0.1
    port_file: Path | None = None
    tls: bool = True
    """Mutual TLS and authorization on the gRPC ports; False only with `--insecure`."""
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca_key: Path | None = None
    join_listen: str | None = None
    node_cert_ttl: int = 3600
    clustermesh_cache_ttl: float = 0.0
    policy_default_local_cluster: bool = False
    max_message_bytes: int = 4 << 20
    max_streams_per_peer: int = 1024
    replica_id: str = field(default_factory=lambda: f"{socket.gethostname()}-"
                                                    f"{uuid.uuid4().hex[:6]}")

    @property
    def embedded(self) -> bool:
        return not self.etcd_endpoints


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bulkhead-controlplane",
                                description="Bulkhead control plane (gRPC agent and admin API)")
    p.add_argument("--listen", default=Config.listen, help="gRPC HOST:PORT (default %(default)s)")
    p.add_argument("--unix-socket", help="also serve on this unix socket path")
    p.add_argument("--metrics-listen", help="serve Prometheus metrics on HOST:PORT (/metrics)")
    p.add_argument("--etcd-endpoints", default="",
                   help="comma-separated etcd endpoints; omitted: embedded etcd under --state-dir")
    p.add_argument("--etcd-cacert", type=Path)
    p.add_argument("--etcd-cert", type=Path)
    p.add_argument("--etcd-key", type=Path)
    p.add_argument("--etcd-compaction-retention", default=Config.etcd_compaction_retention,
                   help="history the embedded etcd keeps (a duration: 30m, 1h, 2h30m; default "
                        "%(default)s): agents resume with deltas on any replica, fresh ones "
                        "included, while their token is within it")
    p.add_argument("--state-dir", type=Path, default=Config.state_dir)
    p.add_argument("--cluster-name", default=Config.cluster_name)
    p.add_argument("--cluster-id", type=int, default=Config.cluster_id,
                   help="0-255; selects the identity range")
    p.add_argument("--cluster-pool", default=Config.cluster_pool, help="pod CIDR pool")
    p.add_argument("--node-mask", type=int, default=Config.node_mask,
                   help="prefix length of each node's CIDR")
    p.add_argument("--service-cidr", default=Config.service_cidr,
                   help="ClusterIPs of services (default %(default)s; never its first host "
                        "address, which Kubernetes gives the API server)")
    p.add_argument("--node-ttl", type=int, default=Config.node_ttl,
                   help="node lease TTL in seconds")
    p.add_argument("--identity-gc-grace", type=float, default=Config.identity_gc_grace,
                   help="seconds an unreferenced identity is kept before it is collected")
    p.add_argument("--identity-range", help="FIRST-LAST, a sub-range of the cluster's range")
    p.add_argument("--identity-max-labels", type=int, default=Config.identity_max_labels,
                   help=f"security-relevant labels allowed per new identity (1-{MAX_LABELS})")
    p.add_argument("--identity-max-label-bytes", type=int,
                   default=Config.identity_max_label_bytes,
                   help="bytes of security-relevant labels allowed per new identity")
    p.add_argument("--identity-max-total-label-bytes", type=int,
                   default=Config.identity_max_total_label_bytes,
                   help="bytes of labels all identities of the cluster may hold together")
    p.add_argument("--policy-map-max", type=int, default=Config.policy_map_max,
                   help="policy entries allowed per identity (BPF policy map size)")
    p.add_argument("--replica-id", help="name of this replica (default host-random)")
    p.add_argument("--subscription-history", type=float,
                   default=Config.subscription_history,
                   help="seconds of revisions kept so agents can resume with deltas")
    p.add_argument("--subscription-queue-bytes", type=int,
                   default=Config.subscription_queue_bytes,
                   help="per-agent send queue; an agent further behind is reset")
    p.add_argument("--bookmark-interval", type=float, default=Config.bookmark_interval,
                   help="seconds of idle stream before a bookmark is sent")
    p.add_argument("--subscription-status-interval", type=float,
                   default=Config.subscription_status_interval,
                   help="seconds between writes of this replica's subscription status record "
                        "(all its agents in one etcd key)")
    p.add_argument("--subscription-max-linger", type=float,
                   default=Config.subscription_max_linger,
                   help="longest a delta waits so it shares one write with the next ones "
                        "(the wait grows with the number of agents, up to this)")
    p.add_argument("--clustermesh-cache-ttl", type=float, default=Config.clustermesh_cache_ttl,
                   help="seconds a connected remote cluster may stay out of sync before its "
                        "mirrored nodes, ipcache entries and identities are dropped (default "
                        "0: never; the last-known state stays in force)")
    p.add_argument("--policy-default-local-cluster", action="store_true",
                   help="endpoint peer selectors (fromEndpoints/toEndpoints) that name no "
                        "io.cilium.k8s.policy.cluster label select only this cluster's "
                        "endpoints (as Cilium's policy-default-local-cluster; default off: "
                        "they select endpoints of every connected cluster)")
    p.add_argument("--max-message-bytes", type=int, default=Config.max_message_bytes,
                   help="largest request message accepted on the gRPC port(s), in bytes "
                        "(default %(default)s, 4 MiB); a larger one is refused with "
                        "RESOURCE_EXHAUSTED naming the limit")
    p.add_argument("--max-streams-per-peer", type=int, default=Config.max_streams_per_peer,
                   help="streaming calls (subscriptions, flow and health watches) one client "
                        "connection may have open at once (default %(default)s); one more is "
                        "refused with RESOURCE_EXHAUSTED naming the limit")
    p.add_argument("--port-file", type=Path,
                   help="write the bound gRPC port here once serving (for --listen HOST:0)")
    p.add_argument("--insecure", action="store_true",
                   help="DEVELOPMENT ONLY: plaintext gRPC ports, no client certificates, no "
                        "authorization (anyone who reaches the port may do anything); warns "
                        "at start. Default: mutual TLS with per-role authorization "
                        "(docs/security.md); without --tls-ca/--tls-cert/--tls-key a cluster CA "
                        "shared through etcd, this replica's certificate and the admin "
                        "credential are created under STATE_DIR/tls on first start")
    p.add_argument("--tls", action="store_true", help=argparse.SUPPRESS)
    # --tls: stage 1's opt-in, now the default; still accepted (a no-op) so old command
    # lines keep working.
    p.add_argument("--tls-ca", type=Path, help="the CA client certificates must come "
                                               "from (PEM)")
    p.add_argument("--tls-cert", type=Path, help="this replica's certificate (PEM)")
    p.add_argument("--tls-key", type=Path, help="its private key (PEM)")
    p.add_argument("--tls-ca-key", type=Path,
                   help="with --tls-ca: the CA's key, to sign node certificates at join")
    p.add_argument("--join-listen",
                   help="HOST:PORT of the join port (server-authenticated TLS, no "
                        "client certificate: only the token join is served there; default: the "
                        "--listen host, its port + 1)")
    p.add_argument("--node-cert-ttl", type=int, default=Config.node_cert_ttl,
                   help="seconds a node certificate is valid (agents renew at 2/3; "
                        "default %(default)s)")
    return p


def from_args(argv: list[str] | None = None) -> Config:
    p = parser()
    a = p.parse_args(argv)
    if not 0 <= a.cluster_id <= 255:
        p.error("--cluster-id must be 0-255")
    if not DNS_LABEL.fullmatch(a.cluster_name):
        p.error("--cluster-name must be a DNS label (lowercase letters, digits, '-')")
    if a.node_ttl < 2:
        p.error("--node-ttl must be at least 2 seconds")
    if not 1 <= a.identity_max_labels <= MAX_LABELS:
        p.error(f"--identity-max-labels must be 1-{MAX_LABELS}")
    if a.identity_max_label_bytes < MAX_LABEL_LENGTH:
        p.error(f"--identity-max-label-bytes must be at least {MAX_LABEL_LENGTH} (one label)")
    if a.identity_max_total_label_bytes < a.identity_max_label_bytes:
        p.error("--identity-max-total-label-bytes must be at least --identity-max-label-bytes")
    if not re.fullmatch(r"(\d+h)?(\d+m)?(\d+s)?", a.etcd_compaction_retention) \
            or not a.etcd_compaction_retention or re.fullmatch(r"(0+[hms])+",
                                                               a.etcd_compaction_retention):
        p.error("--etcd-compaction-retention must be a positive duration like 30m, 1h, 2h30m")
    try:
        ServiceRange(a.service_cidr)
    except ValueError as exc:
        p.error(f"--service-cidr: {exc}")
    given = [a.tls_ca, a.tls_cert, a.tls_key]
    if any(given) and not all(given):
        p.error("--tls-ca, --tls-cert and --tls-key go together")
    if a.insecure and a.tls:
        p.error("--insecure and --tls exclude each other")
    if (any(given) or a.tls_ca_key) and a.insecure:
        p.error("--tls-ca/--tls-cert/--tls-key/--tls-ca-key and --insecure exclude each other")
    if a.join_listen and a.insecure:
        p.error("--join-listen and --insecure exclude each other (no join port without TLS)")
    if not 0 <= a.clustermesh_cache_ttl < float("inf"):
        p.error("--clustermesh-cache-ttl must be 0 (off) or a positive number of seconds")
    if a.node_cert_ttl < 10:
        p.error("--node-cert-ttl must be at least 10 seconds")
    if a.max_message_bytes < 64 << 10:
        p.error("--max-message-bytes must be at least 65536 (64 KiB)")
    if a.max_streams_per_peer < 1:
        p.error("--max-streams-per-peer must be at least 1")
    if a.tls_ca_key and not a.tls_ca:
        p.error("--tls-ca-key needs --tls-ca")
    id_range = None
    if a.identity_range:
        m = re.match(r"^(\d+)-(\d+)$", a.identity_range)
        if not m:
            p.error("--identity-range must be FIRST-LAST")
        id_range = (int(m.group(1)), int(m.group(2)))
    config = Config(
        listen=a.listen, unix_socket=a.unix_socket, metrics_listen=a.metrics_listen,
        etcd_endpoints=[e for e in a.etcd_endpoints.split(",") if e],
        etcd_cacert=a.etcd_cacert, etcd_cert=a.etcd_cert, etcd_key=a.etcd_key,
        state_dir=a.state_dir, cluster_name=a.cluster_name, cluster_id=a.cluster_id,
        cluster_pool=a.cluster_pool, node_mask=a.node_mask, service_cidr=a.service_cidr,
        node_ttl=a.node_ttl,
        identity_gc_grace=a.identity_gc_grace, identity_range=id_range,
        identity_max_labels=a.identity_max_labels,
        identity_max_label_bytes=a.identity_max_label_bytes,
        identity_max_total_label_bytes=a.identity_max_total_label_bytes,
        policy_map_max=a.policy_map_max, subscription_history=a.subscription_history,
        etcd_compaction_retention=a.etcd_compaction_retention,
        subscription_queue_bytes=a.subscription_queue_bytes,
        bookmark_interval=a.bookmark_interval,
        subscription_status_interval=a.subscription_status_interval,
        subscription_max_linger=a.subscription_max_linger, port_file=a.port_file,
        tls=not a.insecure, tls_ca=a.tls_ca, tls_cert=a.tls_cert, tls_key=a.tls_key,
        tls_ca_key=a.tls_ca_key, join_listen=a.join_listen, node_cert_ttl=a.node_cert_ttl,
        clustermesh_cache_ttl=a.clustermesh_cache_ttl,
        policy_default_local_cluster=a.policy_default_local_cluster,
        max_message_bytes=a.max_message_bytes, max_streams_per_peer=a.max_streams_per_peer,
    )
    if a.replica_id:
        config.replica_id = a.replica_id
    return config
