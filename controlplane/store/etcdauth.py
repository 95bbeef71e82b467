"""etcd's own role-based auth over client certificates: with `--client-cert-auth` and auth
enabled, etcd takes the CN of the client certificate as the user name, so what a certificate
may do is decided by etcd itself, not by the good manners of whoever holds it.

Every step is idempotent (run again at each start: a state dir made before auth existed is
upgraded, one that has it is left as it is). Users have no password: they can only be
reached through a certificate of the etcd's CA with their name as CN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from aetcd import rpc  # type: ignore[import-untyped]

from bulkhead import log

from .etcd import Etcd

_log = log.get(__name__)

ROOT = "root"
"""etcd's special user and role: the user must exist, with the role, before auth is enabled."""


async def _tolerating_exists(etcd: Etcd, method: str, request: Any) -> None:
    """`method`, where "already exists" / "already granted" is success (a second start)."""
    try:
        await etcd.auth(method, request)
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.FAILED_PRECONDITION or \
                "already" not in (exc.details() or ""):
            raise


async def _user(etcd: Etcd, name: str, role: str) -> None:
    """User `name` (no password: a certificate with CN `name` only) holding `role`."""
    await _tolerating_exists(etcd, "UserAdd", rpc.AuthUserAddRequest(
        name=name, options=rpc.UserAddOptions(no_password=True)))
    await _tolerating_exists(etcd, "UserGrantRole", rpc.AuthUserGrantRoleRequest(
        user=name, role=role))


async def enable(etcd: Etcd, admin: str) -> None:
    """Turns etcd's auth on: users `root` and `admin` (the CN of the certificate `etcd` was
    opened with, the control plane's) with the root role. The caller must be admitted
    already: auth still off, or `admin` itself."""
    await _tolerating_exists(etcd, "RoleAdd", rpc.AuthRoleAddRequest(name=ROOT))
    await _user(etcd, ROOT, ROOT)
    await _user(etcd, admin, ROOT)
    await etcd.auth("AuthEnable", rpc.AuthEnableRequest())   # a no-op when it is on


async def grant_read(etcd: Etcd, user: str, role: str,
                     ranges: Sequence[tuple[bytes, bytes]]) -> None:
    """User `user` may read the key ranges `ranges` ([key, range_end); an empty range_end is
    the one key) through role `role`, and nothing else: a permission the role holds outside
    `ranges` (an older layout's) is revoked."""
    await _tolerating_exists(etcd, "RoleAdd", rpc.AuthRoleAddRequest(name=role))
    wanted = set(ranges)
    held = await etcd.auth("RoleGet", rpc.AuthRoleGetRequest(role=role))
    for perm in held.perm:
        if (perm.key, perm.range_end) not in wanted or perm.permType != rpc.Permission.READ:
            await etcd.auth("RoleRevokePermission", rpc.AuthRoleRevokePermissionRequest(
                role=role, key=perm.key, range_end=perm.range_end))
            _log.info("etcd role permission revoked", role=role, key=perm.key.decode())
    for key, end in ranges:
        await etcd.auth("RoleGrantPermission", rpc.AuthRoleGrantPermissionRequest(
            name=role, perm=rpc.Permission(permType=rpc.Permission.READ, key=key,
                                           range_end=end)))
    await _user(etcd, user, role)


async def remove_user(etcd: Etcd, user: str) -> bool:
    """Deletes `user` (its certificates are refused from then on); False when it was absent."""
    try:
        await etcd.auth("UserDelete", rpc.AuthUserDeleteRequest(name=user))
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and \
                "not found" in (exc.details() or ""):
            return False
        raise
    return True
