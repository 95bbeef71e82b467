"""Endpoint and ipcache records as stored in etcd (JSON)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Endpoint:
    namespace: str
    name: str
    node: str
    labels: tuple[str, ...]
    ip: str
    identity: int

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @staticmethod
    def from_json(raw: bytes) -> Endpoint:
        data = json.loads(raw)
        data["labels"] = tuple(data["labels"])
        return Endpoint(**data)


@dataclass(frozen=True)
class IPCacheEntry:
    prefix: str
    identity: int
    node: str
    tunnel_ip: str
    tunnel_port: int
    cluster: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @staticmethod
    def from_json(raw: bytes) -> IPCacheEntry:
        return IPCacheEntry(**json.loads(raw))
