"""Defaults the control plane and its clients (the CLI, the lab) must agree on."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:50151"
DEFAULT_STATE_DIR = Path(os.environ.get("BULKHEAD_STATE_DIR",
                                        Path.home() / ".local/state/bulkhead"))
SERVER_FILE = "controlplane.addr"  # written in the state dir; the CLI reads it
EXTERNAL_IP_FILE = "external-ip"
"""In the state dir, written by a lab with a world: the address outside the cluster that
`connectivity test` probes when --external-ip is not given."""
