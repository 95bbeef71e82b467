"""Every RPC the control plane serves, enumerated from the proto descriptors.

The services are those of every `bulkhead.v1` proto file, plus gRPC health and reflection;
a method added to any of them is fuzzed without touching the tests. `NOT_SERVED` lists the
services the control plane does not serve, with why, and `TLS_ONLY` those it serves only with
--tls; the coverage tests check both lists against what running control planes (plain and
--tls) report through reflection.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

import bulkhead.v1

NOT_SERVED = {
    "bulkhead.v1.AgentService": "the node agent's local API, not the control plane's",
    "bulkhead.v1.FqdnService": "served by the node agent (its DNS proxy's cache), not the "
                               "control plane",
}
TLS_ONLY = {"bulkhead.v1.SecurityService"}
"""Served only with --tls (fuzzed on a --tls replica)."""


@dataclass(frozen=True)
class Rpc:
    service: str
    method: MethodDescriptor

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method.name}"

    @property
    def kind(self) -> str:
        """unary_unary, unary_stream, stream_unary or stream_stream."""
        client = "stream" if self.method.client_streaming else "unary"
        server = "stream" if self.method.server_streaming else "unary"
        return f"{client}_{server}"


def _files() -> list[object]:
    files: list[object] = [health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR]
    for info in pkgutil.iter_modules(bulkhead.v1.__path__):
        if info.name.endswith("_pb2"):
            files.append(importlib.import_module(f"bulkhead.v1.{info.name}").DESCRIPTOR)
    return files


def all_rpcs() -> list[Rpc]:
    """Every method of every service the descriptors define, sorted by path."""
    found: list[Rpc] = []
    for file in _files():
        for service in file.services_by_name.values():  # type: ignore[attr-defined]
            found.extend(Rpc(service.full_name, m) for m in service.methods)
    return sorted(found, key=lambda r: r.path)


def served_rpcs() -> list[Rpc]:
    """The methods the control plane without --tls serves: all but NOT_SERVED's and
    TLS_ONLY's."""
    return [r for r in all_rpcs() if r.service not in NOT_SERVED.keys() | TLS_ONLY]


def tls_only_rpcs() -> list[Rpc]:
    """The methods only a --tls control plane serves."""
    return [r for r in all_rpcs() if r.service in TLS_ONLY]
