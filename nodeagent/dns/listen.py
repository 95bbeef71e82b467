"""``--dns-listen``: where the agent serves cluster DNS (kept free of datapath imports, so the
flag parses without loading bcc)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

DEFAULT_LISTEN = "169.254.1.1:53"
"""The pods' gateway (nodeagent.datapath.netlink.GATEWAY_IP): every pod already routes there."""
DEFAULT_REDIRECT_PORT = 15053
"""The DNS proxy's transparent port at 127.0.0.1 (nodeagent.dns.transparent), next to the HTTP
proxy's 15001."""


@dataclass(frozen=True)
class Listen:
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


def parse_listen(value: str, flag: str = "--dns-listen") -> Listen | None:
    """IPv4:PORT (or IPv4 alone, port 53); 'none' or '' -> None (off)."""
    value = value.strip()
    if value in ("", "none"):
        return None
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = value, "53"
    try:
        ip = str(ipaddress.IPv4Address(host))
        number = int(port)
    except ValueError:
        raise ValueError(f"{flag} must be IPv4:PORT or 'none', got {value!r}") from None
    if not 0 < number < 65536:
        raise ValueError(f"{flag} port must be 1-65535, got {number}")
    return Listen(ip, number)
