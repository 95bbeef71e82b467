"""Where the CLI finds the control plane: --server, $BULKHEAD_SERVER, or the address the
embedded control plane wrote in its state dir."""

from __future__ import annotations

import os

import grpc

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


def channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address, options=[("grpc.enable_retries", 1)])
