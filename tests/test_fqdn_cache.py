"""The agent's FQDN cache (learn, TTL, min TTL, expiry, persistence) and how toFQDNs entries
expand to the learnt addresses' node-local identities."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkhead.httprules import HttpRule
from bulkhead.v1 import types_pb2
from nodeagent.datapath import Direction, PolicyEntry
from nodeagent.datapath.layout import MARK_TO_PROXY_EGRESS_LEARNT
from nodeagent.datapath.policykeys import decode_key, entry_keys
from nodeagent.fqdn.cache import LOCAL_IDENTITY_BASE, FqdnCache
from nodeagent.fqdn.expand import expand
from nodeagent.proxy.rules import L7Entry
from nodeagent.proxy.sockets import classify, outside

EGRESS = Direction.EGRESS
API_SELECTOR, WORLD_SELECTOR, CIDR_ID = 70000, 70001, 70002
IDENTITIES = {
    API_SELECTOR: types_pb2.Identity(id=API_SELECTOR, labels=["fqdn:api.world.test."]),
    WORLD_SELECTOR: types_pb2.Identity(id=WORLD_SELECTOR, labels=["fqdn:*.world.test."]),
    CIDR_ID: types_pb2.Identity(id=CIDR_ID, labels=["cidr:192.0.2.0/24"]),
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_learn_gives_each_ip_one_local_identity_until_its_last_name_expires() -> None:
    clock = Clock()
    cache = FqdnCache(clock=clock)
    fresh, changed = cache.learn("default/a", 1, "API.world.test", ["192.0.2.201"], 5)
    assert (fresh, changed) == (["192.0.2.201"], True)
    assert cache.ids == {"192.0.2.201": LOCAL_IDENTITY_BASE}
    # The same IP under another name: no new identity, but what toFQDNs allows changed.
    assert cache.learn("default/a", 1, "alias.world.test", ["192.0.2.201"], 20) == ([], True)
    assert cache.learn("default/b", 2, "api.world.test.", ["192.0.2.201"], 5) == ([], False)
    clock.now += 6
    assert cache.expire() == ([], True)  # alias.world.test still holds it
    assert cache.matching("api.world.test.") == []
    assert cache.matching("*.world.test.") == [LOCAL_IDENTITY_BASE]
    clock.now += 20
    assert cache.expire() == (["192.0.2.201"], True)
    assert cache.ids == {}
    # A number is never given again while the agent runs.
    assert cache.learn("default/a", 1, "api.world.test", ["192.0.2.201"], 5)[0]
    assert cache.ids == {"192.0.2.201": LOCAL_IDENTITY_BASE + 1}


def test_min_ttl_raises_short_ttls() -> None:
    clock = Clock()
    cache = FqdnCache(min_ttl=60, clock=clock)
    cache.learn("default/a", 1, "api.world.test", ["192.0.2.201"], 1)
    clock.now += 30
    assert cache.expire() == ([], False)
    assert cache.entries()[0].ttl == 60


def test_the_cache_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "fqdn.json"
    cache = FqdnCache(path, clock=clock)
    cache.learn("default/a", 1, "api.world.test", ["192.0.2.201", "192.0.2.202"], 30)
    cache.learn("default/a", 1, "old.world.test", ["192.0.2.203"], 1)
    cache.save()
    clock.now += 5
    again = FqdnCache(path, clock=clock)
    assert again.load() == ["192.0.2.201", "192.0.2.202"]  # the expired one is dropped
    assert again.ids == {ip: i for ip, i in cache.ids.items() if ip != "192.0.2.203"}
    again.learn("default/a", 1, "new.world.test", ["192.0.2.204"], 30)
    assert again.ids["192.0.2.204"] > max(cache.ids.values())  # numbering continues


def test_an_unreadable_file_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "fqdn.json"
    path.write_text("{not json")
    cache = FqdnCache(path)
    assert cache.load() == []
    assert (tmp_path / "fqdn.json.bad").exists()


def test_expand_replaces_selector_entries_by_learnt_identities() -> None:
    cache = FqdnCache(clock=Clock())
    cache.learn("default/a", 1, "api.world.test", ["192.0.2.201"], 30)
    cache.learn("default/a", 1, "other.world.test", ["192.0.2.202"], 30)
    api, other = cache.ids["192.0.2.201"], cache.ids["192.0.2.202"]
    entries = [PolicyEntry(EGRESS, API_SELECTOR, 6, 80, 80),
               PolicyEntry(EGRESS, WORLD_SELECTOR, 6, 443, 443),
               PolicyEntry(EGRESS, 1, 17, 53, 53)]
    assert expand(entries, IDENTITIES, cache) == [
        PolicyEntry(EGRESS, api, 6, 80, 80),
        PolicyEntry(EGRESS, api, 6, 443, 443), PolicyEntry(EGRESS, other, 6, 443, 443),
        PolicyEntry(EGRESS, 1, 17, 53, 53)]


def test_nothing_learnt_allows_nothing() -> None:
    entries = [PolicyEntry(EGRESS, API_SELECTOR, 6, 80, 80)]
    assert expand(entries, IDENTITIES, FqdnCache()) == []


def test_world_and_cidr_entries_keep_covering_learnt_addresses() -> None:
    """A learnt IP leaves `world` in the ipcache: what allowed or denied it as world (or as
    a CIDR holding it) still does."""
    cache = FqdnCache(clock=Clock())
    cache.learn("default/a", 1, "api.world.test", ["192.0.2.201"], 30)
    cache.learn("default/a", 1, "far.test", ["203.0.113.9"], 30)
    api, far = cache.ids["192.0.2.201"], cache.ids["203.0.113.9"]
    deny_world = PolicyEntry(EGRESS, 2, 6, 22, 22, deny=True)
    to_cidr = PolicyEntry(EGRESS, CIDR_ID)
    assert expand([deny_world, to_cidr], IDENTITIES, cache) == [
        deny_world, PolicyEntry(EGRESS, api, 6, 22, 22, deny=True),
        PolicyEntry(EGRESS, far, 6, 22, 22, deny=True),
        to_cidr, PolicyEntry(EGRESS, api)]


def test_learnt_addresses_redirect_to_the_l7_proxy_with_their_own_mark() -> None:
    """toFQDNs with HTTP rules: the map entry of each learnt address redirects to the proxy
    (its identity needs 25 bits: the mark carries 24 and says the 25th), and the proxy's
    entries name the same identities, so it finds the HTTP rules of the connection."""
    cache = FqdnCache(clock=Clock())
    cache.learn("default/a", 1, "api.world.test", ["192.0.2.201"], 30)
    api = cache.ids["192.0.2.201"]
    l7 = PolicyEntry(EGRESS, API_SELECTOR, 6, 80, 80, proxy_port=15001)
    assert expand([l7], IDENTITIES, cache) == [PolicyEntry(EGRESS, api, 6, 80, 80,
                                                           proxy_port=15001)]
    assert [k.proxy_port for k in (decode_key(k, v) for k, v in entry_keys(
        3, PolicyEntry(EGRESS, api, 6, 80, 80, proxy_port=15001)))] == [15001]
    with pytest.raises(ValueError, match="25 bits"):
        list(entry_keys(3, PolicyEntry(EGRESS, 1 << 25, 6, 80, 80)))

    rule = HttpRule("GET", "/allowed")
    proxy_entries = [L7Entry("10.0.0.5", "egress", API_SELECTOR, 80, 80, (rule,), 300),
                     L7Entry("10.0.0.5", "egress", 2, 80, 80, None, 300)]
    assert expand(proxy_entries, IDENTITIES, cache) == [
        L7Entry("10.0.0.5", "egress", api, 80, 80, (rule,), 300),
        L7Entry("10.0.0.5", "egress", 2, 80, 80, None, 300),
        L7Entry("10.0.0.5", "egress", api, 80, 80, None, 300)]
    # The mark of a redirect to a learnt address gives the proxy that identity back.
    mark = MARK_TO_PROXY_EGRESS_LEARNT | (api & 0xFFFFFF) << 8
    assert classify(mark) == ("egress", api)
    assert outside("egress", api) and outside("egress", 2) and not outside("egress", 300)
    assert not outside("ingress", 2)
