"""Bulkhead's eBPF datapath: bcc loader with pinned maps, typed maps, netlink, flows.

Import :class:`Datapath` for one node; the value types live in ``models``.
"""

from nodeagent.datapath.datapath import Datapath
from nodeagent.datapath.layout import (
    ID_ANY,
    LAYOUT_VERSION,
    Direction,
    ObsPoint,
    Reason,
    Verdict,
)
from nodeagent.datapath.loader import DatapathUnavailable, MapSizes, check_environment
from nodeagent.datapath.models import (
    Backend,
    CounterEntry,
    CtEntry,
    EndpointInfo,
    EndpointSpec,
    Flow,
    IpcacheEntry,
    PolicyEntry,
    PolicyKeyInfo,
    ServiceFrontend,
    TunnelEntry,
)

__all__ = [
    "ID_ANY",
    "LAYOUT_VERSION",
    "Backend",
    "CounterEntry",
    "CtEntry",
    "Datapath",
    "DatapathUnavailable",
    "Direction",
    "EndpointInfo",
    "EndpointSpec",
    "Flow",
    "IpcacheEntry",
    "MapSizes",
    "ObsPoint",
    "PolicyEntry",
    "PolicyKeyInfo",
    "Reason",
    "ServiceFrontend",
    "TunnelEntry",
    "Verdict",
    "check_environment",
]
