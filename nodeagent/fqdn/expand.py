"""`toFQDNs` entries -> entries for the learnt addresses (node-local identities).

The control plane resolves a `toFQDNs` selector to one peer: the identity labelled
`fqdn:<pattern>`.  The agent replaces such an entry by one per node-local identity whose IP
was learnt for a name matching the pattern (none learnt: the entry allows nothing, and is left
out).  A learnt IP leaves the world identity in the ipcache for its own, so entries whose peer
covers it as world did — the world entities, or a CIDR identity whose prefix holds the IP —
are copied to its identity too (deny entries included), and policies that allowed or denied
it as world keep doing so.  As in Cilium the learnt addresses are the node's, whichever pod
asked.

The same expansion serves the datapath's entries and the L7 proxy's (`toFQDNs` with
`rules.http`: the map redirects a learnt address to the proxy, whose entries name that
address's identity, which the redirect's mark carries: MARK_TO_PROXY_EGRESS_LEARNT).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, TypeVar

from bulkhead import fqdnmatch
from bulkhead.reserved import WORLD_IDENTITIES
from bulkhead.v1 import types_pb2
from nodeagent.fqdn.cache import FqdnCache


def _peer_kind(identity: types_pb2.Identity | None) -> tuple[str, str] | None:
    """("fqdn", pattern) or ("cidr", prefix) for the policy-made identities; else None."""
    if identity is None:
        return None
    for label in identity.labels:
        pattern = fqdnmatch.pattern_of(label)
        if pattern is not None:
            return "fqdn", pattern
        if label.startswith("cidr:"):
            return "cidr", label[5:]
    return None


class _Entry(Protocol):
    """A datapath PolicyEntry or a proxy L7Entry: a frozen dataclass with a peer identity."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    @property
    def peer(self) -> int: ...


E = TypeVar("E", bound=_Entry)


def expand(entries: list[E], identities: Mapping[int, types_pb2.Identity],
           cache: FqdnCache) -> list[E]:
    if not cache.ids and not any(e.peer >= 256 for e in entries):
        return entries
    out: list[E] = []
    for entry in entries:
        if entry.peer in WORLD_IDENTITIES:
            out.append(entry)
            out.extend(dataclasses.replace(entry, peer=i) for i in sorted(cache.ids.values()))
            continue
        kind = _peer_kind(identities.get(entry.peer)) if entry.peer >= 256 else None
        if kind is None:
            out.append(entry)
        elif kind[0] == "fqdn":
            out.extend(dataclasses.replace(entry, peer=i) for i in cache.matching(kind[1]))
        else:
            out.append(entry)
            try:
                net = ipaddress.ip_network(kind[1], strict=False)
            except ValueError:
                continue
            out.extend(dataclasses.replace(entry, peer=i) for ip, i in sorted(cache.ids.items())
                       if ipaddress.ip_address(ip) in net)
    return list(dict.fromkeys(out))
