"""The lab's TLS, in one place, for each of its control planes (the one of a single-cluster
lab, or each cluster's in `up --clusters N`): the admin credential for the lab's own calls,
bootstrap tokens and flags for the agents' joins, the flags the `bulkhead` CLI needs for a
given cluster, and the pointer files that let `bulkhead` find the lab's first control plane.

The lab runs secure by default like any cluster: each control plane creates its cluster CA
and admin credential in its state dir (`labs/NAME/controlplane/tls`, or
`labs/NAME/controlplane-CLUSTER/tls`); each agent joins its own cluster with a token bound to
its node (created here with that cluster's admin credential, handed over in a 0600 file that
is removed once the agent is connected) and keeps its node certificate in
`labs/NAME/agent-NODE/` (`agent-CLUSTER-NODE/` with several clusters: both have an `n1`); the
control plane relays flows over the agents' mutual-TLS TCP API.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509

from bulkhead import tls
from bulkhead.defaults import EXTERNAL_IP_FILE, SERVER_FILE
from bulkhead.v1 import security_pb2, security_pb2_grpc
from cli.commands.agent import AGENTS_DIR

from . import world
from .state import LabState, NodeState, labs_dir

TOKEN_TTL = 600
"""Seconds a node's join token is valid: the agent uses it within its start."""
FIRST_CLUSTER = "c1"
"""The cluster `bulkhead` finds without flags in a lab of several clusters."""


@dataclass(frozen=True)
class Plane:
    """One control plane of the lab: its --state-dir (where it keeps its CA and the admin
    credential) and its address; `cluster` is "" in a single-cluster lab."""

    directory: Path
    address: str
    cluster: str = ""

    def admin(self) -> tls.Credentials:
        return tls.Credentials.admin_in(self.directory)

    def channel(self) -> grpc.Channel:
        """A channel to this control plane with its admin credential."""
        return tls.channel(self.address, self.admin())

    def cli_flags(self) -> list[str]:
        """`bulkhead` flags that reach this control plane with its admin credential (any
        cluster, not only the one the published pointer files name)."""
        admin = self.admin()
        return ["--server", self.address, "--tls-ca", str(admin.ca), "--tls-cert",
                str(admin.cert), "--tls-key", str(admin.key)]


def plane(state: LabState, cluster: str = "") -> Plane:
    """Cluster `cluster`'s control plane; without it the lab's first one (the single control
    plane, or c1's). KeyError for a cluster the lab does not have."""
    if not cluster and state.clusters:
        cluster = FIRST_CLUSTER
    if not cluster:
        return Plane(state.directory / "controlplane", state.controlplane)
    return Plane(state.directory / f"controlplane-{cluster}", state.clusters[cluster].server,
                 cluster)


def planes(state: LabState) -> list[Plane]:
    """Every control plane of the lab."""
    return [plane(state, c) for c in state.clusters] or [plane(state)]


def controlplane_dir(state: LabState, cluster: str = "") -> Path:
    """The --state-dir of the lab's (or cluster `cluster`'s) control plane."""
    return plane(state, cluster).directory


def admin(state: LabState, cluster: str = "") -> tls.Credentials:
    return plane(state, cluster).admin()


def channel(state: LabState, cluster: str = "") -> grpc.Channel:
    """A channel to the lab's (or cluster `cluster`'s) control plane, admin credential."""
    return plane(state, cluster).channel()


def _label(node: NodeState) -> str:
    return f"{node.cluster}-{node.name}" if node.cluster else node.name


def _tls_dir(state: LabState, node: NodeState) -> Path:
    return state.directory / f"agent-{_label(node)}"


def _token_file(state: LabState, node: NodeState) -> Path:
    return state.directory / f"{_label(node)}.token"


def _certified(directory: Path, ca: Path) -> bool:
    """Whether the agent there still holds a node certificate valid for a while, from the CA
    its cluster has now (a lab brought up again keeps nothing else)."""
    cert = directory / "node.crt"
    if not cert.exists() or not ca.exists():
        return False
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    if loaded.issuer != x509.load_pem_x509_certificate(ca.read_bytes()).subject:
        return False
    left = loaded.not_valid_after.replace(tzinfo=datetime.UTC) - \
        datetime.datetime.now(datetime.UTC)
    return left > datetime.timedelta(minutes=1)


def agent_flags(state: LabState, node: NodeState) -> list[str]:
    """`bulkhead-agent` flags for `node`: its cluster's CA, its certificate directory and,
    when it holds no valid certificate yet, a fresh join token bound to it (in a 0600 file)
    made with its cluster's admin credential."""
    own = plane(state, node.cluster)
    directory = _tls_dir(state, node)
    flags = ["--tls-ca", str(own.admin().ca), "--tls-dir", str(directory)]
    if _certified(directory, own.admin().ca):
        return flags
    with own.channel() as ch:
        token = security_pb2_grpc.SecurityServiceStub(ch).CreateToken(
            security_pb2.CreateTokenRequest(ttl_seconds=TOKEN_TTL, node=node.name),
            timeout=30).token
    path = _token_file(state, node)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    return [*flags, "--join-token-file", str(path)]


def joined(state: LabState, node: NodeState) -> None:
    """The agent is connected: its token (used, single-use anyway) is of no further use."""
    _token_file(state, node).unlink(missing_ok=True)


def _published_nodes(state: LabState) -> list[NodeState]:
    """The nodes whose sockets `bulkhead agent --node` finds: the first cluster's."""
    first = plane(state).cluster
    return [n for n in state.nodes.values() if n.cluster == first]


def publish(state: LabState) -> None:
    """Lets the CLI find the lab's first control plane (c1's with several clusters): its
    address (as before), the directory of its admin credential (`tls.ADMIN_POINTER`) and
    links to its agents' sockets; with a world, the address `connectivity test` probes
    outside the cluster (EXTERNAL_IP_FILE). Other clusters are reached with `Plane.cli_flags`."""
    first = plane(state)
    if not first.address:
        return
    home = labs_dir().parent
    (home / SERVER_FILE).write_text(first.address + "\n")
    (home / tls.ADMIN_POINTER).write_text(str(first.admin().cert.parent) + "\n")
    if state.world_pids:  # connectivity test's world and CIDR tests probe its web server
        (home / EXTERNAL_IP_FILE).write_text(world.WEB_IP + "\n")
    else:
        (home / EXTERNAL_IP_FILE).unlink(missing_ok=True)
    agents = home / AGENTS_DIR
    agents.mkdir(parents=True, exist_ok=True, mode=0o700)
    for node in _published_nodes(state):
        if node.socket:
            link = agents / f"{node.name}.sock"
            link.unlink(missing_ok=True)
            link.symlink_to(node.socket)


def unpublish(state: LabState) -> None:
    """Takes back what `publish` wrote, where it still names this lab."""
    first = plane(state)
    home = labs_dir().parent
    addr, pointer = home / SERVER_FILE, home / tls.ADMIN_POINTER
    if first.address and addr.exists() and addr.read_text().strip() == first.address:
        addr.unlink()
        (home / EXTERNAL_IP_FILE).unlink(missing_ok=True)
    if pointer.exists() and pointer.read_text().strip() == str(first.admin().cert.parent):
        pointer.unlink()
    for node in state.nodes.values():
        link = home / AGENTS_DIR / f"{node.name}.sock"
        with contextlib.suppress(OSError):
            if link.is_symlink() and os.readlink(link) == node.socket:
                link.unlink()
