"""RawMap against a real kernel map: a key removed by hand (bpftool, a test emptying a
node's policy map) does not wedge the agent's later deletes."""

from __future__ import annotations

import ctypes as ct
import os
import struct

from nodeagent.datapath.rawmap import RawMap

BPF_MAP_TYPE_LPM_TRIE = 11
BPF_F_NO_PREALLOC = 1


def test_deleting_keys_of_which_one_is_already_gone_deletes_the_rest(
        datapath_env: None) -> None:
    from bcc.libbcc import lib  # type: ignore[import-not-found]

    lib.bcc_create_map.argtypes = [ct.c_int, ct.c_char_p, ct.c_int, ct.c_int, ct.c_int,
                                   ct.c_int]
    fd = lib.bcc_create_map(BPF_MAP_TYPE_LPM_TRIE, b"t_rawmap", 8, 4, 64, BPF_F_NO_PREALLOC)
    assert fd >= 0
    try:
        trie = RawMap("trie", fd, 8, 4, 64)
        keys = [struct.pack("<I", 32) + struct.pack(">I", i) for i in range(10)]
        trie.update([(k, b"\x01\x00\x00\x00") for k in keys])
        RawMap("by-hand", fd, 8, 4, 64).delete([keys[3]])
        trie.delete(keys)
        assert trie.dump() == {}
    finally:
        os.close(fd)
