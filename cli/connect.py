"""Where the CLI finds the control plane: --server, $BULKHEAD_SERVER, or the address the
embedded control plane wrote in its state dir; and its credential the same way (--tls-ca/
--tls-cert/--tls-key, $BULKHEAD_TLS_CA/_CERT/_KEY, or the admin credential in the state dir;
bulkhead.tls.client_material). Mutual TLS always, plaintext only with --insecure or
$BULKHEAD_INSECURE=1."""

from __future__ import annotations

import os
from pathlib import Path

import grpc

from bulkhead import tls
from bulkhead.defaults import DEFAULT_LISTEN, DEFAULT_STATE_DIR, SERVER_FILE


def server_address(explicit: str | None) -> str:
    if explicit:
        return explicit
    if os.environ.get("BULKHEAD_SERVER"):
        return os.environ["BULKHEAD_SERVER"]
    written = DEFAULT_STATE_DIR / SERVER_FILE
    if written.exists():
        return written.read_text().strip()
    return DEFAULT_LISTEN


def credentials(ca: Path | None, cert: Path | None, key: Path | None,
                insecure: bool = False) -> tls.Credentials | None:
    """None (plaintext) only with `insecure` (--insecure) or $BULKHEAD_INSECURE set."""
    return tls.client_material(ca, cert, key, DEFAULT_STATE_DIR,
                               insecure=insecure or tls.insecure_from_env())


def channel(address: str, material: tls.Credentials | None = None) -> grpc.Channel:
    return tls.channel(address, material, options=[("grpc.enable_retries", 1)])
