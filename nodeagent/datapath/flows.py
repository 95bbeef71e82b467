"""Flow events from the BPF ring buffer, kept in a bounded in-memory window.

The programs emit one event per new-connection verdict and per drop (never
per packet of an established flow).  The reader decodes them into Flow values
and keeps the newest ``capacity`` (4,095 by default, like Hubble's ring).
"""

from __future__ import annotations

import collections
import ctypes as ct
import ipaddress
from collections.abc import Callable
from typing import Any

from nodeagent.datapath.layout import FLOW_EVENT, Direction, ObsPoint, Reason, Verdict
from nodeagent.datapath.models import Flow

DEFAULT_CAPACITY = 4095
OBS_F_POLICY_MATCH = 0x80
"""bulkhead.h: or'ed into obs when an allow entry of an enforced direction decided."""


def decode(raw: bytes) -> Flow:
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
        saddr=str(ipaddress.IPv4Address(saddr)),
        daddr=str(ipaddress.IPv4Address(daddr)),
        sport=int.from_bytes(sport.to_bytes(2, "little"), "big"),
        dport=int.from_bytes(dport.to_bytes(2, "little"), "big"),
        protocol=proto,
        tcp_flags=tcp_flags,
        src_identity=src_id,
        dst_identity=dst_id,
        ep_id=ep_id,
        direction=Direction(direction),
        verdict=Verdict(verdict),
        reason=Reason(reason),
        obs_point=ObsPoint(obs & ~OBS_F_POLICY_MATCH),
        service_id=svc_id,
        policy_match=bool(obs & OBS_F_POLICY_MATCH) or reason == Reason.POLICY_DENIED,
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
