"""The agent's local endpoints: names, labels and plumbing of the pods it enforces for.

The kernel's endpoints map is the truth about what exists; this table adds what the map cannot
hold (namespace/name, labels, netns path).  It is written to a small JSON file on every change
so a restarted agent can still name its pods (and re-create them in the control plane if the
node's lease expired while it was down).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bulkhead.v1 import types_pb2

MAX_ENDPOINT_ID = 0xFFFF

READY = "ready"
WAITING = "waiting-for-policy"
RESTORING = "restoring"
CREATING = "creating"

Port = tuple[str, int, str]
"""A container port: (name or "", number, protocol)."""


def served(ports: Iterable[Port] | Iterable[types_pb2.EndpointPort]) -> list[Port]:
    """Ports as the agent keeps them (protocol TCP when not given), from tuples or messages."""
    out = []
    for port in ports:
        name, number, protocol = ((port.name, port.port, port.protocol)
                                  if isinstance(port, types_pb2.EndpointPort) else port)
        out.append((name, number, protocol or "TCP"))
    return out


@dataclass
class LocalEndpoint:
    ep_id: int
    namespace: str
    name: str
    labels: list[str]
    identity: int
    ip: str
    host_ifname: str
    netns_path: str = ""
    status: str = CREATING
    ports: list[Port] = field(default_factory=list)
    """(name, number, protocol): the pod's container ports, as the control plane keeps them."""

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def host_ifname(node: str, namespace: str, name: str) -> str:
    """``lxc`` + 12 hex digits: unique per pod, stable across restarts, 15 characters."""
    digest = hashlib.sha256(f"{node}/{namespace}/{name}".encode()).hexdigest()
    return f"lxc{digest[:12]}"


class EndpointTable:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.by_id: dict[int, LocalEndpoint] = {}
        self._by_ip: dict[str, LocalEndpoint] = {}

    def __len__(self) -> int:
        return len(self.by_id)

    def all(self) -> list[LocalEndpoint]:
        return [self.by_id[k] for k in sorted(self.by_id)]

    def find(self, namespace: str, name: str) -> LocalEndpoint | None:
        return next((e for e in self.by_id.values()
                     if (e.namespace, e.name) == (namespace, name)), None)

    def by_ip(self, ip: str) -> LocalEndpoint | None:
        return self._by_ip.get(ip)

    def with_identity(self, identity: int) -> list[LocalEndpoint]:
        return [e for e in self.by_id.values() if e.identity == identity]

    def resolve(self, ref: str) -> LocalEndpoint | None:
        """An endpoint by id, ``ns/name`` or bare name (namespace default)."""
        if ref.isdigit():
            return self.by_id.get(int(ref))
        namespace, _, name = ref.rpartition("/")
        return self.find(namespace or "default", name)

    def allocate_id(self, taken: set[int]) -> int:
        used = taken | set(self.by_id)
        for ep_id in range(1, MAX_ENDPOINT_ID + 1):
            if ep_id not in used:
                return ep_id
        raise RuntimeError("no free endpoint id")

    def put(self, endpoint: LocalEndpoint) -> None:
        self.remove(endpoint.ep_id)
        self.by_id[endpoint.ep_id] = endpoint
        self._by_ip[endpoint.ip] = endpoint

    def remove(self, ep_id: int) -> LocalEndpoint | None:
        endpoint = self.by_id.pop(ep_id, None)
        if endpoint is not None and self._by_ip.get(endpoint.ip) is endpoint:
            del self._by_ip[endpoint.ip]
        return endpoint

    # -- persistence ------------------------------------------------------------------------
    def save(self) -> None:
        if self.path is None:
            return
        records = [{k: v for k, v in dataclasses.asdict(e).items()
                    if k != "status"} for e in self.all()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(records, indent=1))
        tmp.replace(self.path)

    def load_records(self) -> dict[str, dict[str, Any]]:
        """The saved endpoints by IP ({} when there is no readable file)."""
        if self.path is None:
            return {}
        with contextlib.suppress(OSError, ValueError):
            return {r["ip"]: r for r in json.loads(self.path.read_text()) if "ip" in r}
        return {}
