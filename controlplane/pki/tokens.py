"""Bootstrap tokens (`bulkhead node token create`): ID.SECRET, shown once, stored hashed.

A token is used once: the join deletes it in the same transaction that records the
certificate it issued, so two joins racing with one token cannot both succeed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import time

from bulkhead.errors import Conflict, FieldViolation, Invalid, NotFound, Unauthenticated
from controlplane.nodes.validate import check_name
from controlplane.pki.keys import PkiKeys
from controlplane.records.codec import JoinTokenRecord
from controlplane.store import etcd as ops
from controlplane.store.etcd import KV, Etcd

DEFAULT_TTL = 3600
MAX_TTL = 7 * 24 * 3600
EXPIRED_KEPT = 3600
"""Seconds an expired token stays listed (and refused as expired rather than unknown)."""
_ALPHABET = string.ascii_lowercase + string.digits


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split(token: str) -> tuple[str, str]:
    token_id, dot, secret = token.strip().partition(".")
    if not dot or len(token_id) != 6 or len(secret) != 16 or \
            not set(token_id + secret) <= set(_ALPHABET):
        raise Unauthenticated("the join token is malformed (want ID.SECRET: 6 and 16 "
                              "lowercase letters or digits)")
    return token_id, secret


class TokenStore:
    def __init__(self, etcd: Etcd, keys: PkiKeys) -> None:
        self.etcd = etcd
        self.keys = keys

    async def create(self, ttl: int = 0, node: str = "") -> tuple[str, JoinTokenRecord]:
        problems = []
        if ttl < 0 or ttl > MAX_TTL:
            problems.append(FieldViolation("ttl_seconds", f"must be 0 (default {DEFAULT_TTL} s) "
                                                          f"to {MAX_TTL}, got {ttl}"))
        if node:
            problems += check_name(node, "node", subdomain=True)
        if problems:
            raise Invalid(problems)
        token_id = "".join(secrets.choice(_ALPHABET) for _ in range(6))
        secret = "".join(secrets.choice(_ALPHABET) for _ in range(16))
        now = int(time.time())
        info = JoinTokenRecord(token_id, node, now + (ttl or DEFAULT_TTL), now, digest(secret))
        key = self.keys.token(token_id)
        # Leased: an expired token is refused at once and gone from etcd an hour later.
        lease = await self.etcd.grant((ttl or DEFAULT_TTL) + EXPIRED_KEPT)
        result = await self.etcd.txn([ops.version_is(key, 0)],
                                     [ops.put(key, info.encode(), lease)])
        if not result.succeeded:  # 36^6 ids: a collision is rare; the caller may retry
            await self.etcd.revoke(lease)
            raise Conflict("token id collision; create another")
        return f"{token_id}.{secret}", info

    async def list(self) -> list[JoinTokenRecord]:
        kvs, _, _ = await self.etcd.range(self.keys.tokens)
        return sorted((JoinTokenRecord.decode(kv.value) for kv in kvs), key=lambda t: t.created)

    async def revoke(self, token_id: str) -> None:
        result = await self.etcd.txn([ops.exists(self.keys.token(token_id))],
                                     [ops.delete(self.keys.token(token_id))])
        if not result.succeeded:
            raise NotFound(f"token {token_id!r} does not exist (used, revoked or never made)")

    async def check(self, token: str, node: str) -> tuple[JoinTokenRecord, KV]:
        """The stored token `token` stands for, if it may join `node` now; the KV to delete
        (compare its mod revision) when the certificate is issued."""
        token_id, secret = split(token)
        kv = await self.etcd.get(self.keys.token(token_id))
        refused = Unauthenticated("the join token is unknown, used or revoked")
        if kv is None:
            raise refused
        info = JoinTokenRecord.decode(kv.value)
        if not hmac.compare_digest(info.sha256, digest(secret)):
            raise refused
        if info.expires < time.time():
            raise Unauthenticated(f"the join token {token_id} expired")
        if info.node and info.node != node:
            raise Unauthenticated(f"the join token {token_id} is for node {info.node!r}, not "
                                  f"{node!r}")
        return info, kv
