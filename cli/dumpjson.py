"""`bulkhead agent bpf ... -o json`: an agent's map dump as typed objects.

The agent's DumpMap answers rows of display strings under table headers (`IP PREFIX/ADDRESS`,
`AGE (s)`), the shape `cilium bpf ... list` prints. Scripts get one object per row instead,
with snake_case keys and typed values (README, "JSON of the agent's dumps"): each known header
has its key and its parser here; a header this table does not know yet (a newer agent) keeps
its text as value under its snake_cased name, so nothing is lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Parse = Callable[[str], dict[str, Any]]


def _text(key: str, none: str = "") -> Parse:
    """A string; `none` (e.g. "-") is the empty string."""
    return lambda v: {key: "" if v == none and none else v}


def _int(key: str) -> Parse:
    return lambda v: {key: _number(v)}


def _number(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def _enabled(key: str) -> Parse:
    return lambda v: {key: v == "Enabled"}


def _list(key: str) -> Parse:
    """Comma-separated; `-` and `ANY` are the empty list."""
    return lambda v: {key: [] if v in ("-", "ANY", "") else v.split(",")}


def _address(prefix: str) -> Parse:
    """`IP:PORT` → `{prefix}ip`, `{prefix}port`."""

    def parse(value: str) -> dict[str, Any]:
        ip, _, port = value.rpartition(":")
        return {f"{prefix}ip": ip, f"{prefix}port": _number(port)}

    return parse


def _ports(value: str) -> dict[str, Any]:
    """`ANY`, `ANY/TCP`, `80/TCP`, `80-90/UDP` → protocol ("ANY" for any), port_lo, port_hi."""
    ports, _, proto = value.partition("/")
    if value == "ANY":
        return {"protocol": "ANY", "port_lo": 0, "port_hi": 65535}
    if ports == "ANY":
        return {"protocol": proto, "port_lo": 0, "port_hi": 65535}
    lo, _, hi = ports.partition("-")
    return {"protocol": proto, "port_lo": _number(lo), "port_hi": _number(hi or lo)}


def _frontend(value: str) -> dict[str, Any]:
    """`10.96.0.10:80/TCP` → frontend_ip, frontend_port, protocol."""
    address, _, proto = value.partition("/")
    return {**_address("frontend_")(address), "protocol": proto}


_BACKEND = re.compile(r"^(?P<addr>\S+) \((?P<revnat>\d+)\) \((?P<slot>\d+)\)"
                      r"(?: \[(?P<flags>.*)\])?$")


def _backend(value: str) -> dict[str, Any]:
    """`10.1.0.10:80 (7) (1)`, or slot 0: `0.0.0.0:0 (7) (0) [ClusterIP, no backend]`."""
    match = _BACKEND.match(value)
    if match is None:
        return {"backend": value}
    flags = match["flags"]
    return {**_address("backend_")(match["addr"]), "revnat_id": int(match["revnat"]),
            "slot": int(match["slot"]), "flags": flags.split(", ") if flags else []}


COLUMNS: dict[str, Parse] = {
    # bpf endpoint list
    "IP ADDRESS": _text("ip"),
    "ENDPOINT ID": _int("endpoint_id"),
    "IDENTITY": _int("identity"),
    "IFINDEX": _int("ifindex"),
    "INGRESS": _enabled("ingress_enforced"),
    "EGRESS": _enabled("egress_enforced"),
    "POD MAC": _text("pod_mac"),
    "HOST MAC": _text("host_mac"),
    # bpf ipcache list, bpf tunnel list
    "IP PREFIX/ADDRESS": _text("prefix"),
    "PREFIX": _text("prefix"),
    "TUNNEL ENDPOINT": _text("tunnel_endpoint"),
    # bpf policy get
    "POLICY": _text("verdict"),
    "DIRECTION": _text("direction"),
    "LABELS (source:key[=value])": _list("labels"),
    "PORT/PROTO": _ports,
    "PROXY PORT": lambda v: {"proxy_port": 0 if v == "NONE" else _number(v)},
    # bpf ct list
    "PROTO": _text("protocol"),
    "SOURCE": _address("src_"),
    "DESTINATION": _address("dst_"),
    "SRC IDENTITY": _int("src_identity"),
    "DST IDENTITY": _int("dst_identity"),
    "FLAGS": _list("tcp_flags"),
    "SERVICE NAT": _text("service_nat", none="-"),
    "EXPIRES (s)": _int("expires_s"),
    "AGE (s)": _int("age_s"),
    # bpf lb list
    "SERVICE ADDRESS": _frontend,
    "BACKEND ADDRESS (REVNAT_ID) (SLOT)": _backend,
    # bpf counters list
    "VERDICT": _text("verdict"),
    "REASON": _text("drop_reason", none="-"),
    "PACKETS": _int("packets"),
    "BYTES": _int("bytes"),
}


def snake(header: str) -> str:
    """`AGE (s)` → `age_s`: the key of a header this module does not know."""
    return re.sub(r"[^a-z0-9]+", "_", header.lower()).strip("_")


def row_json(columns: list[str], fields: dict[str, str]) -> dict[str, Any]:
    """One dumped row as a typed object, its keys from every column of the dump."""
    out: dict[str, Any] = {}
    for column in columns:
        value = fields.get(column, "")
        parse = COLUMNS.get(column)
        out.update(parse(value) if parse else {snake(column): value})
    return out
