"""Names and addresses as the API accepts them."""

from __future__ import annotations

import ipaddress
import re

from bulkhead.rpcerror import FieldViolation

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
                                           f"(at most {limit} characters), got {value[:80]!r}")]
    return []


def check_ipv4(value: str, field_name: str) -> list[FieldViolation]:
    try:
        ip = ipaddress.IPv4Address(value)
    except ValueError:
        return [FieldViolation(field_name, f"must be an IPv4 address, got {value[:80]!r}")]
    if ip.is_unspecified or ip.is_multicast or ip.is_loopback:
        return [FieldViolation(field_name, f"{value} cannot be used here")]
    return []


def check_hostport(value: str, field_name: str) -> list[FieldViolation]:
    """Empty, or HOST:PORT with a port 1-65535."""
    if not value:
        return []
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535 or len(value) > 300:
        return [FieldViolation(field_name, f"must be HOST:PORT, got {value[:80]!r}")]
    return []
