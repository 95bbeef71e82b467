"""Policy entry -> LPM key expansion (pure Python, no kernel needed)."""

from __future__ import annotations

import pytest

from nodeagent.datapath import Direction, PolicyEntry
from nodeagent.datapath.policykeys import decode_key, endpoint_keys, port_blocks


@pytest.mark.parametrize(
    ("lo", "hi"), [(80, 80), (80, 81), (1, 10), (0, 65535), (1000, 2000), (65535, 65535)]
)
def test_port_blocks_cover_the_range_exactly(lo: int, hi: int) -> None:
    covered: list[int] = []
    for start, bits in port_blocks(lo, hi):
        size = 1 << (16 - bits)
        assert start % size == 0, "blocks must be aligned"
        covered.extend(range(start, start + size))
    assert covered == list(range(lo, hi + 1))


def test_keys_decode_back_to_blocks() -> None:
    keys = endpoint_keys(
        7,
        [
            PolicyEntry(Direction.INGRESS, 301, 6, 80, 0),
            PolicyEntry(Direction.EGRESS, 0),
            PolicyEntry(Direction.INGRESS, 302, 0, 53, 53, deny=True),
        ],
    )
    decoded = {decode_key(k) for k in keys}
    assert len(decoded) == 1 + 1 + 3  # any-protocol port entry -> TCP, UDP, SCTP
    tcp80 = next(d for d in decoded if d.peer == 301)
    assert (tcp80.ep_id, tcp80.protocol, tcp80.port_lo, tcp80.port_hi) == (7, 6, 80, 80)
    anything = next(d for d in decoded if d.direction == Direction.EGRESS)
    assert anything.protocol is None and not anything.deny
    assert {d.protocol for d in decoded if d.deny} == {6, 17, 132}


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError):
        endpoint_keys(1, [PolicyEntry(Direction.INGRESS, 1 << 25)])  # past node-local ids
    with pytest.raises(ValueError):
        endpoint_keys(1, [PolicyEntry(Direction.EGRESS, 5, 6, 80, 80, deny=True,
                                      proxy_port=15001)])  # a deny never redirects
    with pytest.raises(ValueError):
        endpoint_keys(1, [PolicyEntry(Direction.INGRESS, 5, 6, 90, 80)])


def test_a_learnt_identity_can_go_to_the_l7_proxy() -> None:
    """toFQDNs with HTTP rules: a node-local (learnt) identity's entry keeps its redirect."""
    keys = endpoint_keys(1, [PolicyEntry(Direction.EGRESS, (1 << 24) | 7, 6, 80, 80,
                                         proxy_port=15001)])
    decoded = [decode_key(key, value) for key, value in keys.items()]
    assert [(d.peer, d.port_lo, d.proxy_port) for d in decoded] == [((1 << 24) | 7, 80, 15001)]


def test_icmp_entries_are_one_exact_type() -> None:
    """An ICMP entry holds one type where the port would be: type 0 (EchoReply) is one key,
    never "all ICMP types"."""
    keys = endpoint_keys(3, [PolicyEntry(Direction.INGRESS, 0, 1, 8, 8),
                             PolicyEntry(Direction.INGRESS, 5, 1, 0, 0, deny=True)])
    decoded = sorted((decode_key(k) for k in keys), key=lambda d: d.port_lo)
    assert [(d.protocol, d.port_lo, d.port_hi, d.deny) for d in decoded] == [
        (1, 0, 0, True), (1, 8, 8, False)]
    with pytest.raises(ValueError):
        endpoint_keys(1, [PolicyEntry(Direction.INGRESS, 5, 1, 256, 256)])
    with pytest.raises(ValueError):
        endpoint_keys(1, [PolicyEntry(Direction.INGRESS, 5, 1, 8, 9)])
