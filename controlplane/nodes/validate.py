"""Names and addresses as the API accepts them."""

from __future__ import annotations

import ipaddress
import re

from bulkhead.errors import FieldViolation, shown

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
"""A DNS label (RFC 1123): endpoint namespaces, the cluster name."""
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")


def check_name(value: str, field_name: str, *, subdomain: bool = False) -> list[FieldViolation]:
    pattern = _DNS_SUBDOMAIN if subdomain else DNS_LABEL
    if not value:
        return [FieldViolation(field_name, "is required")]
    if not pattern.fullmatch(value):
        limit = 253 if subdomain else 63
        return [FieldViolation(field_name, f"must be lowercase letters, digits and '-' "
                                           f"(at most {limit} characters), got {shown(value)}")]
    return []


_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_PORT = re.compile(r"[0-9]{1,5}")


def check_ipv4(value: str, field_name: str) -> list[FieldViolation]:
    """A node's unicast IPv4 address: not 0.0.0.0/8, loopback, multicast, or 240.0.0.0/4
    (reserved, with the broadcast 255.255.255.255). Private, shared, documentation and
    link-local addresses are accepted: nodes often have nothing else."""
    try:
        ip = ipaddress.IPv4Address(value)
    except ValueError:
        return [FieldViolation(field_name, f"must be an IPv4 address, got {shown(value)}")]
    if ip in _THIS_NETWORK or ip.is_loopback or ip.is_multicast or ip.is_reserved:
        return [FieldViolation(field_name, f"{value} is not a unicast address a node can have "
                                           "(0.0.0.0/8, loopback, multicast, 240.0.0.0/4 and "
                                           "255.255.255.255 are refused)")]
    return []


def check_agent_address(value: str, underlay_ip: str, field_name: str) -> list[FieldViolation]:
    """Empty, or IP:PORT where IP is the node's own `underlay_ip`, loopback (an agent on the
    control plane's host, as in the lab) or unspecified (0.0.0.0 or [::]: an agent listening
    on every address, reached at its underlay IP: `dialled_address`). The control plane dials
    this address to relay flows: any other host would let a registration point it anywhere
    (a port scanner)."""
    if not value:
        return []
    host, _, port = value.rpartition(":")
    if not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        return [FieldViolation(field_name, f"must be IP:PORT with a port 1-65535, "
                                           f"got {shown(value)}")]
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip = ipaddress.ip_address(literal)
    except ValueError:
        return [FieldViolation(field_name, f"must be IP:PORT (no host names), "
                                           f"got {shown(value)}")]
    if (ip.version == 6) != (host != literal):
        return [FieldViolation(field_name, f"must be IPv4:PORT or [IPv6]:PORT, "
                                           f"got {shown(value)}")]
    if not ip.is_loopback and not ip.is_unspecified and str(ip) != underlay_ip:
        return [FieldViolation(field_name, f"{ip} must be the node's underlay_ip "
                                           f"({shown(underlay_ip)}) or a loopback address")]
    return []


def dialled_address(value: str, underlay_ip: str) -> str:
    """A checked agent address as the relay dials it: an unspecified host (an agent listening
    on every address) becomes the node's underlay IP."""
    host, _, port = value.rpartition(":")
    if value and ipaddress.ip_address(host.strip("[]")).is_unspecified:
        return f"{underlay_ip}:{port}"
    return value
