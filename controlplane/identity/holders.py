"""Who holds an identity reference. Endpoints and policies hold theirs under names of their own
kind; those references live and die with their owner (deleted in the owner's own transaction),
so the admin API may neither drop them nor add to them."""

from __future__ import annotations

from bulkhead.errors import FailedPrecondition

ENDPOINT = "endpoint:"
POLICY = "policy:"
_OWNERS = {ENDPOINT: ("endpoint", "bulkhead endpoint delete NS/NAME"),
           POLICY: ("policy", "bulkhead policy delete")}


def endpoint_holder(namespace: str, name: str) -> str:
    return f"{ENDPOINT}{namespace}/{name}"


def policy_holder(kind: str, namespace: str, name: str) -> str:
    return f"{POLICY}{kind}/{namespace}/{name}"


def refuse_owned(holder: str, action: str) -> None:
    """Raises FAILED_PRECONDITION when `holder` is an endpoint's or a policy's: a released
    endpoint reference lets its identity be collected (and its number reused) while the
    endpoint still uses it; an added one pins the identity where no delete will drop it."""
    for prefix, (kind, how) in _OWNERS.items():
        if holder.startswith(prefix):
            raise FailedPrecondition(
                f"{action} {kind} {holder[len(prefix):][:300]!r}: "
                f"{kind} references are taken and dropped only with the {kind} itself "
                f"({how})")

