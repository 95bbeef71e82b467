"""Flow events from the BPF ring buffer, kept in a bounded in-memory window.

The programs emit one event per new-connection verdict and per drop (never
per packet of an established flow).  The reader decodes them into Flow values
and keeps the newest ``capacity`` (4,095 by default, like Hubble's ring).
"""

from __future__ import annotations

import collections
import ctypes as ct
from collections.abc import Callable
from socket import inet_ntoa
from typing import Any

from nodeagent.datapath.layout import FLOW_EVENT, Direction, ObsPoint, Reason, Verdict
from nodeagent.datapath.models import Flow

DEFAULT_CAPACITY = 4095
OBS_F_POLICY_MATCH = 0x80
OBS_F_MESH_GRACE = 0x40
"""bulkhead.h: or'ed into obs when an allow entry of an enforced direction decided."""


_DIRECTIONS = {m.value: m for m in Direction}
_VERDICTS = {m.value: m for m in Verdict}
_REASONS = {m.value: m for m in Reason}
_OBS_POINTS = {m.value: m for m in ObsPoint}


def _member(members: dict[int, Any], kind: type, value: int) -> Any:
    found = members.get(value)
    return kind(value) if found is None else found   # an unknown value raises as before


def decode(raw: bytes) -> Flow:
    """One ring-buffer record as a Flow. Runs once per new connection on the agent's datapath
    thread, so it avoids the slow paths (ipaddress objects, Enum calls): a new connection's
    cost includes it."""
    (
        ts,
        saddr,
        daddr,
        src_id,
        dst_id,
        ep_id,
        sport,
        dport,
        proto,
        tcp_flags,
        direction,
        verdict,
        reason,
        obs,
        _pad,
        svc_id,
    ) = FLOW_EVENT.unpack_from(raw)
    return Flow(
        time_ns=ts,
        saddr=inet_ntoa(saddr),
        daddr=inet_ntoa(daddr),
        sport=((sport & 0xFF) << 8) | (sport >> 8),   # network order, read little-endian
        dport=((dport & 0xFF) << 8) | (dport >> 8),
        protocol=proto,
        tcp_flags=tcp_flags,
        src_identity=src_id,
        dst_identity=dst_id,
        ep_id=ep_id,
        direction=_member(_DIRECTIONS, Direction, direction),
        verdict=_member(_VERDICTS, Verdict, verdict),
        reason=_member(_REASONS, Reason, reason),
        obs_point=_member(_OBS_POINTS, ObsPoint, obs & ~(OBS_F_POLICY_MATCH | OBS_F_MESH_GRACE)),
        service_id=svc_id,
        policy_match=bool(obs & OBS_F_POLICY_MATCH) or reason == Reason.POLICY_DENIED,
        mesh_sync_grace=bool(obs & OBS_F_MESH_GRACE),
    )


class FlowReader:
    """Polls one loader's ring buffer; ``poll`` must run off the asyncio loop."""

    def __init__(self, bpf: Any, capacity: int = DEFAULT_CAPACITY):
        self.flows: collections.deque[Flow] = collections.deque(maxlen=capacity)
        self.seen = 0
        self.listeners: list[Callable[[Flow], None]] = []
        self._bpf = bpf
        bpf[b"flows"].open_ring_buffer(self._on_event)

    def _on_event(self, _ctx: Any, data: Any, size: int) -> int:
        flow = decode(ct.string_at(data, min(size, FLOW_EVENT.size)))
        self.flows.append(flow)
        self.seen += 1
        for listener in self.listeners:
            listener(flow)
        return 0

    def poll(self, timeout_ms: int = 0) -> int:
        """Drain pending events (waiting up to ``timeout_ms``); returns how many arrived."""
        before = self.seen
        if timeout_ms > 0:
            self._bpf.ring_buffer_poll(timeout_ms)
        self._bpf.ring_buffer_consume()
        return self.seen - before

    def last(self, n: int | None = None) -> list[Flow]:
        items = list(self.flows)
        return items if n is None else items[-n:]
