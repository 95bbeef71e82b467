"""BPF map dumps as flat rows with named columns (DumpMap), like `cilium bpf ... list`.

Each function runs on the datapath thread and returns (columns, rows, max entries); the CLI
prints the columns as a table header; its `-o json` turns each row into a typed object
(cli/dumpjson.py).
"""

from __future__ import annotations

from collections.abc import Callable

from nodeagent.datapath import Datapath, Reason
from nodeagent.datapath.models import PROTOCOLS
from nodeagent.flowstore import DROP_REASONS, tcp_flag_names

Rows = list[dict[str, str]]
Dump = tuple[list[str], Rows, int]
Labels = Callable[[int], list[str]]


def _max(dp: Datapath, name: str) -> int:
    return dp.loaded.maps[name].max_entries if name in dp.loaded.maps else 0


def endpoints(dp: Datapath) -> Dump:
    cols = ["IP ADDRESS", "ENDPOINT ID", "IDENTITY", "IFINDEX", "INGRESS", "EGRESS",
            "POD MAC", "HOST MAC"]
    rows = [dict(zip(cols, [e.ip, str(e.ep_id), str(e.identity), str(e.ifindex),
                            _enforced(e.ingress_enforced), _enforced(e.egress_enforced),
                            e.pod_mac, e.host_mac], strict=True))
            for e in dp.endpoints()]
    return cols, rows, _max(dp, "endpoints")


def ipcache(dp: Datapath) -> Dump:
    cols = ["IP PREFIX/ADDRESS", "IDENTITY", "TUNNEL ENDPOINT"]
    rows = [dict(zip(cols, [e.prefix, str(e.identity), e.tunnel_endpoint or "0.0.0.0"],
                     strict=True))
            for e in dp.ipcache()]
    return cols, rows, _max(dp, "ipcache")


def tunnels(dp: Datapath) -> Dump:
    cols = ["PREFIX", "TUNNEL ENDPOINT", "IDENTITY"]
    rows = [dict(zip(cols, [t.prefix, t.tunnel_endpoint, str(t.identity)], strict=True))
            for t in dp.tunnels()]
    return cols, rows, _max(dp, "ipcache")


def policy(dp: Datapath, ep_id: int, labels: Labels) -> Dump:
    cols = ["POLICY", "DIRECTION", "IDENTITY", "LABELS (source:key[=value])", "PORT/PROTO",
            "PROXY PORT"]
    rows = []
    for k in dp.policy(ep_id):
        if k.protocol is None:
            port = "ANY"
        else:
            proto = PROTOCOLS.get(k.protocol, str(k.protocol))
            if (k.port_lo, k.port_hi) == (0, 0xFFFF):
                port = f"ANY/{proto}"
            elif k.port_lo == k.port_hi:
                port = f"{k.port_lo}/{proto}"
            else:
                port = f"{k.port_lo}-{k.port_hi}/{proto}"
        peer_labels = ",".join(labels(k.peer)) if k.peer else "ANY"
        rows.append(dict(zip(cols, ["Deny" if k.deny else "Allow", k.direction.name.capitalize(),
                                    str(k.peer), peer_labels or "-", port,
                                    str(k.proxy_port) if k.proxy_port else "NONE"],
                                   strict=True)))
    return cols, rows, _max(dp, "policy")


def ct(dp: Datapath) -> Dump:
    cols = ["PROTO", "SOURCE", "DESTINATION", "SRC IDENTITY", "DST IDENTITY", "FLAGS",
            "SERVICE NAT", "EXPIRES (s)", "AGE (s)"]
    rows = []
    for e in sorted(dp.ct(), key=lambda e: e.age_s):
        proto = PROTOCOLS.get(e.protocol, str(e.protocol))
        flags = ",".join(tcp_flag_names(e.tcp_flags)) if e.protocol == 6 else ""
        rows.append(dict(zip(cols, [proto, f"{e.saddr}:{e.sport}", f"{e.daddr}:{e.dport}",
                                    str(e.src_identity), str(e.dst_identity), flags or "-",
                                    e.nat or "-", f"{e.expires_in_s:.0f}", f"{e.age_s:.0f}"],
                                strict=True)))
    return cols, rows, _max(dp, "ct")


def lb(dp: Datapath) -> Dump:
    """Like `cilium bpf lb list`: per frontend a slot-0 row (the service itself, its id and
    flags), then one row per backend slot (numbered from 1 as cilium does)."""
    cols = ["SERVICE ADDRESS", "BACKEND ADDRESS (REVNAT_ID) (SLOT)"]
    rows = []
    for fe in dp.services():
        address = f"{fe.ip}:{fe.port}/{PROTOCOLS.get(fe.protocol, str(fe.protocol))}"
        flags = ["ClusterIP"]
        if fe.affinity:
            flags.append("ClientIP affinity")
        if not fe.backends:
            flags.append("no backend")
        rows.append({cols[0]: address,
                     cols[1]: f"0.0.0.0:0 ({fe.service_id}) (0) [{', '.join(flags)}]"})
        for slot, be in enumerate(fe.backends, start=1):
            rows.append({cols[0]: address,
                         cols[1]: f"{be.ip}:{be.port} ({fe.service_id}) ({slot})"})
    return cols, rows, _max(dp, "lb_frontends")


def counters(dp: Datapath, ep_id: int | None) -> Dump:
    cols = ["ENDPOINT ID", "DIRECTION", "VERDICT", "REASON", "PACKETS", "BYTES"]
    rows = []
    for c in dp.counters(ep_id):
        verdict = "FORWARDED" if c.reason == Reason.NONE else "DROPPED"
        rows.append(dict(zip(cols, [str(c.ep_id), c.direction.name.lower(), verdict,
                                    DROP_REASONS.get(c.reason, "") or "-", str(c.packets),
                                    str(c.bytes)], strict=True)))
    return cols, rows, dp.loaded.sizes.counters


def _enforced(flag: bool) -> str:
    return "Enabled" if flag else "Disabled"
