"""The FQDN cache: which addresses the node's pods learnt for which names, until when.

Every A record of an answer the DNS proxy passed to a pod is kept as (endpoint, name, IP) for
the answer's TTL, raised to `min_ttl` (Cilium's `--tofqdns-min-ttl`; 0 = the TTL as given).
Each learnt IP gets a node-local identity (Cilium's local scope, bit 24 and up: never on the
wire, since world traffic is not tunnelled, and never clashing with cluster identities, which
are 24 bits): the ipcache maps the IP to it, and `expand` gives it the entries of the
`toFQDNs` selectors its names match.  An IP keeps its identity while any (endpoint, name)
still holds it; when the last expires the identity is released (numbers are not reused while
the agent runs, so a stale entry can never name a new address).

The cache is kept in a JSON file (`path`) so a restarted agent restores the same IPs with the
same identities (the pinned maps already hold them) instead of cutting connections until the
pods look their names up again.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from bulkhead import fqdnmatch, log
from nodeagent.datapath.layout import LOCAL_IDENTITY_BIT

_log = log.get(__name__)

LOCAL_IDENTITY_BASE = LOCAL_IDENTITY_BIT
"""First node-local identity (Cilium's IdentityScopeLocal): bit 24, which the datapath and the
proxy's redirect mark read too."""
FORMAT = 1


@dataclass
class Learnt:
    endpoint: str
    """namespace/name of the pod that asked (its IP when it has no name)"""
    endpoint_id: int
    name: str
    """fully qualified, lower case, trailing dot"""
    ip: str
    ttl: int
    learnt_at: float
    expires_at: float


class FqdnCache:
    """Not thread-safe: the agent's loop owns it."""

    def __init__(self, path: Path | None = None, min_ttl: int = 0,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.min_ttl = max(0, min_ttl)
        self.clock = clock
        self.records: dict[tuple[str, str, str], Learnt] = {}
        self.ids: dict[str, int] = {}
        """learnt IP -> its node-local identity"""
        self._next = LOCAL_IDENTITY_BASE
        self.dirty = False

    # -- learning and expiry -------------------------------------------------------------
    def learn(self, endpoint: str, endpoint_id: int, name: str, ips: Iterable[str],
              ttl: int) -> tuple[list[str], bool]:
        """Records an answer; returns the IPs that got an identity now (new to the node) and
        whether any (name, IP) pair is new to the node (entries to expand changed)."""
        now = self.clock()
        ttl = max(int(ttl), self.min_ttl)
        name = fqdnmatch.canonical_name(name)
        fresh: list[str] = []
        pairs = {(r.name, r.ip) for r in self.records.values()}
        changed = False
        for ip in ips:
            changed = changed or (name, ip) not in pairs
            key = (endpoint, name, ip)
            known = self.records.get(key)
            if known is not None:
                known.ttl, known.expires_at = ttl, max(known.expires_at, now + ttl)
            else:
                self.records[key] = Learnt(endpoint, endpoint_id, name, ip, ttl, now, now + ttl)
            if ip not in self.ids:
                self.ids[ip] = self._next
                self._next += 1
                fresh.append(ip)
        self.dirty = True
        return fresh, changed

    def expire(self) -> tuple[list[str], bool]:
        """Drops what outlived its TTL; returns the IPs no record holds any more (their
        identity is released) and whether anything expired."""
        now = self.clock()
        gone = [k for k, r in self.records.items() if r.expires_at <= now]
        if not gone:
            return [], False
        for key in gone:
            del self.records[key]
        held = {r.ip for r in self.records.values()}
        released = [ip for ip in self.ids if ip not in held]
        for ip in released:
            del self.ids[ip]
        self.dirty = True
        return released, True

    def next_expiry(self) -> float | None:
        return min((r.expires_at for r in self.records.values()), default=None)

    # -- queries -------------------------------------------------------------------------
    def names(self) -> dict[str, set[str]]:
        """IP -> the names it was learnt for (any endpoint)."""
        out: dict[str, set[str]] = {}
        for r in self.records.values():
            out.setdefault(r.ip, set()).add(r.name)
        return out

    def matching(self, pattern: str) -> list[int]:
        """The identities of the IPs learnt for a name matching the canonical `pattern`."""
        found = set()
        for r in self.records.values():
            if fqdnmatch.matches(pattern, r.name):
                found.add(self.ids[r.ip])
        return sorted(found)

    def identity_of(self, identity: int) -> tuple[str, set[str]] | None:
        """(IP, names) of a node-local identity, for flows' labels."""
        for ip, ident in self.ids.items():
            if ident == identity:
                return ip, {r.name for r in self.records.values() if r.ip == ip}
        return None

    def entries(self, pattern: str = "") -> list[Learnt]:
        rows = [r for r in self.records.values()
                if not pattern or fqdnmatch.matches(fqdnmatch.canonical(pattern), r.name)]
        return sorted(rows, key=lambda r: (r.name, r.ip, r.endpoint))

    # -- persistence ---------------------------------------------------------------------
    def save(self) -> None:
        """Writes the file atomically (a crash leaves the previous one)."""
        if self.path is None:
            self.dirty = False
            return
        data = {"format": FORMAT, "next": self._next, "ids": self.ids,
                "records": [asdict(r) for r in self.records.values()]}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)
        self.dirty = False

    def load(self) -> list[str]:
        """Restores the file (what expired meanwhile is dropped); returns the restored IPs.
        An unreadable file is logged and set aside: the pods look their names up again."""
        if self.path is None or not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text())
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            records = [Learnt(**r) for r in data["records"]]
            ids = {str(ip): int(i) for ip, i in data["ids"].items()}
            nxt = int(data["next"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _log.warning("fqdn cache file unreadable; starting empty", path=str(self.path),
                         error=str(exc))
            with contextlib.suppress(OSError):
                self.path.rename(self.path.with_name(self.path.name + ".bad"))
            return []
        self.records = {(r.endpoint, r.name, r.ip): r for r in records if r.ip in ids}
        self.ids = ids
        self._next = max(nxt, max(ids.values(), default=LOCAL_IDENTITY_BASE - 1) + 1)
        self.expire()
        return sorted(self.ids)
