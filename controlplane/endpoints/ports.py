"""An endpoint's ports (a pod's container ports), checked as Kubernetes checks a pod's
`ports[]`, so a Service's named targetPort resolves to one port per endpoint and protocol."""

from __future__ import annotations

from collections.abc import Sequence

from bulkhead.errors import FieldViolation, shown
from bulkhead.portname import RULE, is_port_name
from controlplane.records.codec import EndpointPort

MAX_PORTS = 64
PROTOCOLS = ("TCP", "UDP")


def check_ports(ports: Sequence[EndpointPort], field: str = "ports"
                ) -> tuple[tuple[EndpointPort, ...], list[FieldViolation]]:
    """The ports with the protocol defaulted to TCP, and every problem, by index."""
    if len(ports) > MAX_PORTS:
        return (), [FieldViolation(field, f"at most {MAX_PORTS} ports, got {len(ports)}")]
    problems: list[FieldViolation] = []
    names: dict[str, int] = {}
    numbers: dict[tuple[int, str], int] = {}
    out = []
    for i, port in enumerate(ports):
        path = f"{field}[{i}]"
        protocol = port.protocol or "TCP"
        if protocol not in PROTOCOLS:
            problems.append(FieldViolation(f"{path}.protocol",
                                           f"must be TCP or UDP, not {shown(protocol)}"))
        if not 1 <= port.port <= 65535:
            problems.append(FieldViolation(f"{path}.port", f"must be 1-65535, not {port.port}"))
        elif (port.port, protocol) in numbers:
            problems.append(FieldViolation(f"{path}.port", (
                f"{port.port}/{protocol} is already {field}[{numbers[port.port, protocol]}]")))
        if port.name and not is_port_name(port.name):
            problems.append(FieldViolation(f"{path}.name", f"{shown(port.name)} must be {RULE}"))
        elif port.name in names:
            problems.append(FieldViolation(f"{path}.name", (
                f"{shown(port.name)} is already the name of {field}[{names[port.name]}]")))
        if port.name:
            names.setdefault(port.name, i)
        numbers.setdefault((port.port, protocol), i)
        out.append(EndpointPort(port.name, port.port, protocol))
    return tuple(out), problems
