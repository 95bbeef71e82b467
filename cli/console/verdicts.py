"""A recorded flow as a connection `policy trace` takes, and trace answers as the page shows
them: the verdict and deciding rule of the side that saw a flow, in `policy trace`'s words."""

from __future__ import annotations

from typing import Any

from bulkhead.v1 import policy_pb2, policyimpact_pb2

from . import flowmap


def connection_of(flow: dict[str, Any]) -> policyimpact_pb2.ProposedConnection | None:
    """The connection a flow records, as trace takes it (L7 responses and flows without an
    identity's labels are not traced). ICMP flows carry no type: traced as an echo request."""
    l7 = flow.get("l7")
    if l7 is not None and l7.get("type") != "request":
        return None
    src, dst = flow["source"].get("labels") or [], flow["destination"].get("labels") or []
    if not src or not dst:
        return None
    protocol = flow.get("protocol") or "TCP"
    port = 8 if protocol == "ICMP" else flow["destination"].get("port", 0)
    method, _, path = flowmap.request_of(flow).partition(" ")
    return policyimpact_pb2.ProposedConnection(
        src_labels=src, dst_labels=dst, dport=port, protocol=protocol, http_method=method,
        http_path=path, side=flow.get("direction", "") if not method else "")


def key_of(c: policyimpact_pb2.ProposedConnection) -> tuple[Any, ...]:
    return (tuple(c.src_labels), tuple(c.dst_labels), c.dport, c.protocol, c.http_method,
            c.http_path, c.side)


def trace_request(c: policyimpact_pb2.ProposedConnection) -> policy_pb2.TracePolicyRequest:
    return policy_pb2.TracePolicyRequest(src_labels=c.src_labels, dst_labels=c.dst_labels,
                                         dport=c.dport, protocol=c.protocol,
                                         http_method=c.http_method, http_path=c.http_path)


def side_reason(side: dict[str, Any]) -> str:
    """`policy trace`'s words for one side: the rule, or a default with what enforces it."""
    reason = side.get("reason", "")
    enforcing = sorted({f"{o['namespace']}/{o['name']}" if o["namespace"] else o["name"]
                        for o in side.get("enforced_by", [])})
    if reason == "default-deny" and enforcing:
        reason += f" (enforced by {', '.join(enforcing)})"
    return reason


def decided(traced: dict[str, Any], side: str) -> dict[str, Any]:
    """The verdict and deciding rule of the side that saw a flow (both sides: the first that
    denies, else the ingress side's rule)."""
    if side in ("ingress", "egress"):
        chosen = traced[side]
    elif traced["egress"]["verdict"] == "DENIED":
        chosen = traced["egress"]
    else:
        chosen = traced["ingress"]
    return {"verdict": chosen["verdict"], "rule": side_reason(chosen),
            "side": side or ("egress" if chosen is traced["egress"] else "ingress")}


_RECORDED = {"FORWARDED": "ALLOWED", "DROPPED": "DENIED"}


def against(decided: dict[str, Any], recorded: str) -> dict[str, Any]:
    """A trace's answer for a recorded flow: when the stored policies would decide it
    otherwise (they changed since), the rule is not the one that decided it; said so."""
    if not decided.get("verdict") or _RECORDED.get(recorded) == decided["verdict"]:
        return decided
    return {**decided, "stale": True,
            "rule": f"policies changed since; now {decided['verdict']}: {decided['rule']}"}


def trace_json(traced: dict[str, Any]) -> dict[str, Any]:
    return {"verdict": traced["verdict"],
            "egress": {"verdict": traced["egress"]["verdict"],
                       "rule": side_reason(traced["egress"])},
            "ingress": {"verdict": traced["ingress"]["verdict"],
                        "rule": side_reason(traced["ingress"])}}
