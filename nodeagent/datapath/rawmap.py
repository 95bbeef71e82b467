"""Byte-level access to one BPF map through libbcc's batch syscalls.

bcc's own batch helpers build one ctypes object per entry and hand a 4-byte
batch token to the kernel even for maps whose token is a whole key (LPM trie),
so the datapath talks to the map fd directly with byte buffers: a full dump or
a 100,000-entry write is a handful of syscalls and no per-entry ctypes objects.
Every write is counted, so callers (and tests) can prove a sync wrote only
differences.

Maps that only user space writes (everything but conntrack and counters) are
*mirrored*: read once from the kernel, then kept in step with every write.  The
mirror makes diffs cheap and gives exact-key reads, which an LPM trie cannot
(its lookup returns the longest match, possibly a shorter covering prefix).
"""

from __future__ import annotations

import ctypes as ct
import errno
import os
from collections.abc import Sequence

from bcc.libbcc import lib  # type: ignore[import-not-found]

_U32P = ct.POINTER(ct.c_uint32)
_TOKEN_SIZE = 64  # >= the largest key: LPM tries use a key as the batch token
_CHUNK = 65536


def _check(res: int, what: str) -> None:
    if res != 0:
        err = ct.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def diff(
    desired: dict[bytes, bytes], current: dict[bytes, bytes]
) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    """What turns ``current`` into ``desired``: (entries to write, keys to delete)."""
    changed = [(k, v) for k, v in desired.items() if current.get(k) != v]
    stale = [k for k in current if k not in desired]
    return changed, stale


class RawMap:
    """One map fd with fixed key and value sizes, read and written as bytes."""

    def __init__(
        self,
        name: str,
        fd: int,
        key_size: int,
        value_size: int,
        max_entries: int,
        mirrored: bool = False,
    ):
        self.name = name
        self.mirrored = mirrored
        self._mirror: dict[bytes, bytes] | None = None
        self.fd = fd
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.writes = 0
        """Entries updated or deleted through this object (the restart test reads it)."""

    def entries(self) -> dict[bytes, bytes]:
        """Every entry (the mirror for mirrored maps: do not modify it)."""
        if not self.mirrored:
            return self.dump()
        if self._mirror is None:
            self._mirror = self.dump()
        return self._mirror

    def dump(self) -> dict[bytes, bytes]:
        """Every entry, read from the kernel: key bytes -> value bytes."""
        ks, vs = self.key_size, self.value_size
        keys = ct.create_string_buffer(ks * self.max_entries)
        values = ct.create_string_buffer(vs * self.max_entries)
        in_tok = ct.create_string_buffer(_TOKEN_SIZE)
        out_tok = ct.create_string_buffer(_TOKEN_SIZE)
        total = 0
        first = True
        while total < self.max_entries:
            count = ct.c_uint32(self.max_entries - total)
            res = lib.bpf_lookup_batch(
                self.fd,
                None if first else ct.cast(in_tok, _U32P),
                ct.cast(out_tok, _U32P),
                ct.byref(keys, ks * total),
                ct.byref(values, vs * total),
                ct.byref(count),
            )
            err = ct.get_errno()
            total += count.value
            if res != 0:
                if err == errno.ENOENT:
                    break
                raise OSError(err, f"lookup batch on {self.name}: {os.strerror(err)}")
            ct.memmove(in_tok, out_tok, _TOKEN_SIZE)
            first = False
        kraw = keys.raw
        vraw = values.raw
        return {
            kraw[i * ks : (i + 1) * ks]: vraw[i * vs : (i + 1) * vs] for i in range(total)
        }

    def count(self, chunk: int = 4096) -> int:
        """Entries in the kernel map, read in fixed-size batches (bounded memory, unlike
        ``dump`` which sizes its buffers for a full map).  Not for per-CPU maps."""
        ks, vs = self.key_size, self.value_size
        keys = ct.create_string_buffer(ks * chunk)
        values = ct.create_string_buffer(vs * chunk)
        in_tok = ct.create_string_buffer(_TOKEN_SIZE)
        out_tok = ct.create_string_buffer(_TOKEN_SIZE)
        total = 0
        first = True
        while True:
            n = ct.c_uint32(chunk)
            res = lib.bpf_lookup_batch(
                self.fd,
                None if first else ct.cast(in_tok, _U32P),
                ct.cast(out_tok, _U32P),
                keys,
                values,
                ct.byref(n),
            )
            err = ct.get_errno()
            total += n.value
            if res != 0:
                if err == errno.ENOENT:
                    return total
                raise OSError(err, f"lookup batch on {self.name}: {os.strerror(err)}")
            ct.memmove(in_tok, out_tok, _TOKEN_SIZE)
            first = False

    def update(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        """Create or replace entries, in batches."""
        for start in range(0, len(items), _CHUNK):
            chunk = items[start : start + _CHUNK]
            kbuf = ct.create_string_buffer(b"".join(k for k, _ in chunk))
            vbuf = ct.create_string_buffer(b"".join(v for _, v in chunk))
            count = ct.c_uint32(len(chunk))
            _check(
                lib.bpf_update_batch(self.fd, kbuf, vbuf, ct.byref(count)),
                f"update batch on {self.name}",
            )
            self.writes += len(chunk)
            if self._mirror is not None:
                self._mirror.update(chunk)

    def delete(self, keys: Sequence[bytes]) -> None:
        """Delete entries. A key already missing (removed by hand, or the mirror was behind)
        is skipped: the kernel stops a batch at it, so that batch is redone one key at a time,
        instead of failing every later write of the agent on that key."""
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            kbuf = ct.create_string_buffer(b"".join(chunk), len(chunk) * self.key_size)
            count = ct.c_uint32(len(chunk))
            if lib.bpf_delete_batch(self.fd, kbuf, ct.byref(count)) != 0:
                err = ct.get_errno()
                if err != errno.ENOENT:
                    raise OSError(err, f"delete batch on {self.name}: {os.strerror(err)}")
                for key in chunk:  # the count it reports is not relied on
                    self._delete_one(key)
            self.writes += len(chunk)
            if self._mirror is not None:
                for key in chunk:
                    self._mirror.pop(key, None)

    def sync(self, desired: dict[bytes, bytes], current: dict[bytes, bytes] | None = None) -> int:
        """Make the map (or the ``current`` slice of it) equal ``desired``.

        Writes only entries whose value differs and deletes only keys that are
        no longer wanted; returns the number of writes.
        """
        if current is None:
            current = self.entries()
        changed, stale = diff(desired, current)
        if changed:
            self.update(changed)
        if stale:
            self.delete(stale)
        return len(changed) + len(stale)

    def _delete_one(self, key: bytes) -> None:
        if lib.bpf_delete_elem(self.fd, ct.create_string_buffer(key, self.key_size)) != 0:
            err = ct.get_errno()
            if err != errno.ENOENT:
                raise OSError(err, f"delete on {self.name}: {os.strerror(err)}")

    def get(self, key: bytes) -> bytes | None:
        """The value stored under exactly ``key`` (mirrored maps) or the kernel's lookup."""
        if self.mirrored:
            return self.entries().get(key)
        value = ct.create_string_buffer(self.value_size)
        kbuf = ct.create_string_buffer(key, self.key_size)
        if lib.bpf_lookup_elem(self.fd, kbuf, value) != 0:
            return None
        return value.raw
