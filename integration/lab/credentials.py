"""The lab's TLS, in one place: the control plane's admin credential for the lab's own calls,
bootstrap tokens and flags for the agents' joins, and what the `bulkhead` CLI needs to find
the lab's control plane credential and agent sockets (as it finds the lab's address).

The lab runs secure by default like any cluster: its control plane creates the cluster CA
and the admin credential in its state dir (`labs/NAME/controlplane/tls`); each agent joins
with a token bound to its node (created here with the admin credential, handed over in a 0600
file that is removed once the agent is connected) and keeps its node certificate in
`labs/NAME/agent-NODE/`; the control plane relays flows over the agents' mutual-TLS TCP API.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from pathlib import Path

import grpc
from cryptography import x509

from bulkhead import tls
from bulkhead.defaults import SERVER_FILE
from bulkhead.v1 import security_pb2, security_pb2_grpc
from cli.commands.agent import AGENTS_DIR

from .state import LabState, NodeState, labs_dir

TOKEN_TTL = 600
"""Seconds a node's join token is valid: the agent uses it within its start."""


def controlplane_dir(state: LabState) -> Path:
    """The lab control plane's --state-dir."""
    return state.directory / "controlplane"


def admin(state: LabState) -> tls.Credentials:
    return tls.Credentials.admin_in(controlplane_dir(state))


def channel(state: LabState) -> grpc.Channel:
    """A channel to the lab's control plane with the admin credential."""
    return tls.channel(state.controlplane, admin(state))


def _tls_dir(state: LabState, node: NodeState) -> Path:
    return state.directory / f"agent-{node.name}"


def _token_file(state: LabState, node: NodeState) -> Path:
    return state.directory / f"{node.name}.token"


def _certified(directory: Path) -> bool:
    """Whether the agent there still holds a node certificate valid for a while."""
    cert = directory / "node.crt"
    if not cert.exists():
        return False
    not_after = x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after
    left = not_after.replace(tzinfo=datetime.UTC) - datetime.datetime.now(datetime.UTC)
    return left > datetime.timedelta(minutes=1)


def agent_flags(state: LabState, node: NodeState) -> list[str]:
    """`bulkhead-agent` flags for `node`: the cluster CA, its certificate directory and, when
    it holds no valid certificate yet, a fresh join token bound to it (in a 0600 file)."""
    directory = _tls_dir(state, node)
    flags = ["--tls-ca", str(admin(state).ca), "--tls-dir", str(directory)]
    if _certified(directory):
        return flags
    with channel(state) as ch:
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


def publish(state: LabState) -> None:
    """Lets the CLI find the lab: the control plane's address (as before), the directory of its
    admin credential (`tls.ADMIN_POINTER`) and links to the agents' sockets."""
    home = labs_dir().parent
    (home / SERVER_FILE).write_text(state.controlplane + "\n")
    (home / tls.ADMIN_POINTER).write_text(str(admin(state).cert.parent) + "\n")
    agents = home / AGENTS_DIR
    agents.mkdir(parents=True, exist_ok=True, mode=0o700)
    for node in state.nodes.values():
        if node.socket:
            link = agents / f"{node.name}.sock"
            link.unlink(missing_ok=True)
            link.symlink_to(node.socket)


def unpublish(state: LabState) -> None:
    """Takes back what `publish` wrote, where it still names this lab."""
    home = labs_dir().parent
    addr, pointer = home / SERVER_FILE, home / tls.ADMIN_POINTER
    if state.controlplane and addr.exists() and addr.read_text().strip() == state.controlplane:
        addr.unlink()
    if pointer.exists() and pointer.read_text().strip() == str(admin(state).cert.parent):
        pointer.unlink()
    for node in state.nodes.values():
        link = home / AGENTS_DIR / f"{node.name}.sock"
        with contextlib.suppress(OSError):
            if link.is_symlink() and os.readlink(link) == node.socket:
                link.unlink()
