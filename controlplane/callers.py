"""Who is calling, as domain code sees it: a name, a role, and the method being called.

The gRPC layer (controlplane.api.authz) builds it from the peer certificate and checks the
role; domain code asks it the node-scoped questions only it can answer (which node holds the
endpoint being deleted) and raises `PermissionDenied` itself, never a status code.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from bulkhead.errors import PermissionDenied

ADMIN = "admin"
NODE = "node"
READER = "reader"
ANONYMOUS = "anonymous"
"""No certificate: only the join may be called."""


@dataclass(frozen=True)
class Caller:
    name: str
    role: str
    method: str = ""
    serial: int = 0
    issued: float = 0.0
    """Unix time the caller's certificate was made (revoking a node refuses older ones)."""

    @property
    def is_node(self) -> bool:
        return self.role == NODE

    def require_node(self, node: str, what: str = "") -> None:
        """A node may act only for itself; admins for anyone."""
        if self.role == NODE and node != self.name:
            target = f" {what}" if what else ""
            raise PermissionDenied(f"node {self.name!r} may not call {self.method}{target} for "
                                   f"node {node!r}: a node certificate speaks only for its own "
                                   "node")


UNCHECKED = Caller("", ADMIN, "plaintext")
"""The caller on a server started with --insecure (development only): anyone may do anything."""

_CURRENT: contextvars.ContextVar[Caller] = contextvars.ContextVar("caller", default=UNCHECKED)


def current() -> Caller:
    """The caller of the call this task serves."""
    return _CURRENT.get()


def set_current(caller: Caller) -> contextvars.Token[Caller]:
    return _CURRENT.set(caller)


def reset(token: contextvars.Token[Caller]) -> None:
    _CURRENT.reset(token)
