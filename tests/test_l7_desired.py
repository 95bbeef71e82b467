"""What the agent derives from L7 policy entries: the proxy port in the policy map and the
proxy's rule table, with Cilium's combination rules (no kernel, no proxy process)."""

from __future__ import annotations

from bulkhead.httprules import HttpRequest, HttpRule, to_proto
from bulkhead.v1 import subscription_pb2 as pb
from nodeagent import desired
from nodeagent.datapath import Direction, PolicyEntry
from nodeagent.datapath.policykeys import decode_key, endpoint_keys
from nodeagent.proxy.rules import EGRESS, INGRESS, L7Entry, RuleTable

LANDING = HttpRule(method="POST", path="/v1/request-landing")


def entry(peer: int, port: int = 80, *, l7: bool = False, deny: bool = False,
          direction: pb.PolicyEntry.Direction = pb.PolicyEntry.INGRESS) -> pb.PolicyEntry:
    return pb.PolicyEntry(direction=direction, peer=peer, protocol=6, port_lo=port,
                          port_hi=port, verdict=pb.PolicyEntry.DENY if deny else
                          pb.PolicyEntry.ALLOW, l7=pb.PolicyEntry.HTTP if l7 else
                          pb.PolicyEntry.NONE, http=[to_proto(LANDING)] if l7 else [])


def policy(*entries: pb.PolicyEntry) -> pb.IdentityPolicy:
    return pb.IdentityPolicy(identity=300, ingress_enforced=True, entries=list(entries))


def test_l7_entries_carry_the_proxy_port() -> None:
    got = desired.policy_entries(policy(entry(301, l7=True), entry(302)), proxy_port=15001)
    assert [(e.peer, e.proxy_port) for e in got] == [(301, 15001), (302, 0)]


def test_without_a_proxy_l7_entries_allow_nothing() -> None:
    got = desired.policy_entries(policy(entry(301, l7=True), entry(302)))
    assert [e.peer for e in got] == [302]


def test_the_proxy_gets_every_allow_entry_of_a_direction_with_l7() -> None:
    got = desired.l7_entries([
        ("10.0.1.23", policy(entry(301, l7=True), entry(302), entry(303, deny=True),
                             entry(304, direction=pb.PolicyEntry.EGRESS))),
        ("10.0.1.24", policy(entry(302))),  # no L7 at all: nothing for the proxy
    ])
    assert got == [L7Entry("10.0.1.23", INGRESS, 301, 80, 80, (LANDING,), 300),
                   L7Entry("10.0.1.23", INGRESS, 302, 80, 80, None, 300)]


def check(table: RuleTable, peer: int, method: str, path: str, port: int = 80) -> bool:
    return table.check("10.0.1.23", INGRESS, peer, port, HttpRequest(method, path)).allowed


def test_rule_table_combination() -> None:
    table = RuleTable([
        L7Entry("10.0.1.23", INGRESS, 301, 80, 80, (LANDING,)),
        L7Entry("10.0.1.23", INGRESS, 0, 80, 80, (HttpRule(method="GET"),)),
        L7Entry("10.0.1.23", INGRESS, 302, 80, 80, None),
        L7Entry("10.0.1.23", EGRESS, 0, 0, 0, ()),
    ])
    assert check(table, 301, "POST", "/v1/request-landing")
    assert check(table, 301, "GET", "/anything")  # rules of entries for the peer union
    assert not check(table, 301, "PUT", "/v1/exhaust-port")
    assert check(table, 302, "PUT", "/v1/exhaust-port")  # an L3/L4 allow lets all through
    assert not check(table, 301, "POST", "/v1/request-landing", port=81)  # no entry: closed
    assert table.check("10.0.1.23", EGRESS, 5, 443, HttpRequest("PUT", "/x")).allowed
    assert not table.check("10.9.9.9", INGRESS, 301, 80, HttpRequest("GET", "/")).allowed


def test_an_egress_connection_to_a_local_destination_passes_both_sides_rules() -> None:
    """Same node: the datapath redirects once (the source's egress wins) and the proxy's
    upstream leg is not policed again, so the destination's ingress rules are checked too."""
    client, server = ("10.0.1.5", 301), ("10.0.1.23", 300)
    table = RuleTable([
        L7Entry(client[0], EGRESS, server[1], 80, 80, (HttpRule(),), client[1]),   # any request
        L7Entry(server[0], INGRESS, client[1], 80, 80, (LANDING,), server[1]),
    ])

    def egress(method: str, path: str) -> bool:
        return table.check_connection(client[0], EGRESS, server[1], 80, (server[0], 80),
                                      HttpRequest(method, path)).allowed

    assert egress("POST", "/v1/request-landing")
    assert not egress("PUT", "/v1/exhaust-port")            # the server's ingress says no
    # A destination without ingress L7 rules: the egress rules alone decide.
    assert table.check_connection(client[0], EGRESS, server[1], 80, ("10.0.1.99", 80),
                                  HttpRequest("PUT", "/v1/exhaust-port")).allowed


def test_a_redirect_and_a_plain_allow_for_the_same_key_keep_the_redirect() -> None:
    plain = PolicyEntry(Direction.INGRESS, 301, 6, 80, 80)
    l7 = PolicyEntry(Direction.INGRESS, 301, 6, 80, 80, proxy_port=15001)
    for entries in ([plain, l7], [l7, plain]):
        keys = endpoint_keys(10, entries)
        assert [decode_key(k, v).proxy_port for k, v in keys.items()] == [15001]


def egress(peer: int, protocol: int, lo: int, hi: int, *,
           deny: bool = False) -> pb.PolicyEntry:
    return pb.PolicyEntry(direction=pb.PolicyEntry.EGRESS, peer=peer, protocol=protocol,
                          port_lo=lo, port_hi=hi, verdict=pb.PolicyEntry.DENY if deny
                          else pb.PolicyEntry.ALLOW)


def dns_policy(*entries: pb.PolicyEntry, patterns: tuple[str, ...] = ("*.world.test.",)
               ) -> pb.IdentityPolicy:
    return pb.IdentityPolicy(identity=300, egress_enforced=True, entries=list(entries),
                             dns_patterns=list(patterns))


def redirects(entries: list[PolicyEntry]) -> set[tuple[int, int, int, int, int]]:
    """(peer, protocol, first port, last port, proxy port) of the keys that redirect."""
    keys = [decode_key(k, v) for k, v in endpoint_keys(9, entries).items()]
    return {(k.peer, k.protocol or 0, k.port_lo, k.port_hi, k.proxy_port)
            for k in keys if k.proxy_port}


def test_port_53_of_an_identity_with_dns_rules_goes_to_the_dns_proxy() -> None:
    """UDP and TCP 53 of every egress allow that reaches it (any protocol, a range, all
    ports), whatever the peer; other ports of those entries stay plain allows."""
    got = desired.policy_entries(dns_policy(
        egress(2, 0, 53, 53), egress(301, 17, 1, 1024), egress(302, 0, 0, 0),
        egress(303, 6, 80, 80), egress(304, 17, 53, 53, deny=True)),
        proxy_port=15001, dns_port=15053)
    assert redirects(got) == {(2, 6, 53, 53, 15053), (2, 17, 53, 53, 15053),
                              (301, 17, 53, 53, 15053), (302, 6, 53, 53, 15053),
                              (302, 17, 53, 53, 15053)}
    keys = [decode_key(k, v) for k, v in endpoint_keys(9, got).items()]
    # the rest of 301's range is still allowed, without a redirect
    assert any(k.peer == 301 and k.port_lo <= 1024 <= k.port_hi and not k.proxy_port
               for k in keys)


def test_dns_is_not_redirected_without_dns_rules_or_a_dns_proxy() -> None:
    assert not redirects(desired.policy_entries(
        dns_policy(egress(2, 0, 53, 53), patterns=()), dns_port=15053))
    assert not redirects(desired.policy_entries(dns_policy(egress(2, 0, 53, 53))))


def test_http_entry_of_any_protocol_redirects_tcp_only() -> None:
    """The datapath redirects UDP as well now (to the DNS proxy): an HTTP entry whose
    protocol is any must not send UDP to the HTTP proxy."""
    http = entry(301, l7=True)
    http.protocol = 0
    got = desired.policy_entries(policy(http), proxy_port=15001)
    assert redirects(got) == {(301, 6, 80, 80, 15001)}
    keys = [decode_key(k, v) for k, v in endpoint_keys(9, got).items()]
    assert any(k.peer == 301 and k.protocol == 17 and not k.proxy_port for k in keys)
