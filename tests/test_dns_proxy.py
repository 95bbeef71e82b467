"""The DNS proxy (nodeagent.dns.proxy) on real sockets in this namespace, in front of the lab
world's DNS server (integration.lab.worlddns) as its upstream: rules.dns enforced per
client (REFUSED), other names forwarded, the addresses of allowed answers learnt before the
answer is sent, cluster names answered locally, DNS flows recorded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import pytest

from bulkhead import fqdnmatch
from bulkhead.v1 import types_pb2
from controlplane.store.embedded import free_port
from integration.lab import worlddns
from nodeagent.dns.answer import TCP_MAX
from nodeagent.dns.listen import Listen
from nodeagent.dns.proxy import Client, DnsProxy
from nodeagent.dns.server import DnsServer
from nodeagent.dns.upstream import Upstream, Upstreams

pytestmark = pytest.mark.timeout(30)

RECORDS = {"api.world.test": ["192.0.2.201"], "other.world.test": ["192.0.2.202"]}
SERVICES = {"default/web": types_pb2.Service(namespace="default", name="web",
                                             cluster_ip="10.96.0.10")}
RULED = Client("default/ruled", 7, (fqdnmatch.canonical("api.world.test"),))
FREE = Client("default/free", 8, ())


@dataclass
class Harness:
    port: int
    learnt: list[tuple[str, str, list[str], int]] = field(default_factory=list)
    flows: list[dict[str, Any]] = field(default_factory=list)
    clients: dict[str, Client] = field(default_factory=dict)

    async def ask(self, name: str, source: str) -> dns.message.Message:
        query = dns.message.make_query(name, "A")
        return await dns.asyncquery.udp(query, "127.0.0.1", port=self.port, timeout=5,
                                        source=source)


@pytest.fixture
async def proxy() -> AsyncIterator[Harness]:
    world, world_port = worlddns.start(RECORDS, ttl=7)
    upstream = Upstream(Listen("127.0.0.1", world_port))
    await upstream.start(None)
    listen = Listen("127.0.0.1", free_port())
    harness = Harness(listen.port, clients={"127.0.0.2": RULED, "127.0.0.3": FREE})

    async def learn(client: Client, name: str, ips: list[str], ttl: int) -> None:
        await asyncio.sleep(0.05)  # a datapath write takes time: the answer must wait for it
        harness.learnt.append((client.endpoint, name, ips, ttl))

    server_proxy = DnsProxy(listen, lambda: SERVICES, harness.clients.get, upstream, learn,
                            harness.flows.append)
    server = DnsServer(listen, lambda: SERVICES, server_proxy.handle)
    await server.start(None)
    try:
        yield harness
    finally:
        await server.close()
        upstream.close()
        world.close()


async def test_an_allowed_name_is_forwarded_and_learnt_before_the_answer(
        proxy: Harness) -> None:
    reply = await proxy.ask("api.world.test", "127.0.0.2")
    assert reply.rcode() == dns.rcode.NOERROR
    assert [rd.address for rrset in reply.answer for rd in rrset] == ["192.0.2.201"]
    # Learnt (the maps written) by the time the pod holds the answer.
    assert proxy.learnt == [("default/ruled", "api.world.test.", ["192.0.2.201"], 7)]


async def test_a_name_outside_the_rules_is_refused_and_not_forwarded(proxy: Harness) -> None:
    reply = await proxy.ask("other.world.test", "127.0.0.2")
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.answer
    assert proxy.learnt == []
    assert [(f["type"], f["verdict"], f["query"], f["rcode"]) for f in proxy.flows] == [
        ("request", "DROPPED", "other.world.test.", ""),
        ("response", "DROPPED", "other.world.test.", "REFUSED")]


async def test_rules_dns_apply_to_cluster_names_too(proxy: Harness) -> None:
    """As in Cilium: the DNS rules decide every query of the pod (`matchPattern: "*"` is
    how a policy lets the rest through)."""
    assert (await proxy.ask("web.default.svc.cluster.local", "127.0.0.2")).rcode() == \
        dns.rcode.REFUSED


async def test_a_pod_without_dns_rules_gets_every_name(proxy: Harness) -> None:
    other = await proxy.ask("other.world.test", "127.0.0.3")
    assert [rd.address for rrset in other.answer for rd in rrset] == ["192.0.2.202"]
    cluster = await proxy.ask("web.default.svc.cluster.local", "127.0.0.3")
    assert [rd.address for rrset in cluster.answer for rd in rrset] == ["10.96.0.10"]
    assert (await proxy.ask("missing.world.test", "127.0.0.3")).rcode() == dns.rcode.NXDOMAIN
    assert [e[1] for e in proxy.learnt] == ["other.world.test."]  # only answers with IPs


async def test_dns_flows_carry_query_answer_and_rcode(proxy: Harness) -> None:
    await proxy.ask("api.world.test", "127.0.0.2")
    request, response = proxy.flows
    assert (request["type"], request["verdict"], request["query"], request["qtypes"]) == (
        "request", "FORWARDED", "api.world.test.", ["A"])
    assert (response["type"], response["verdict"], response["ips"], response["ttl"],
            response["rcode"]) == ("response", "FORWARDED", ["192.0.2.201"], 7, "NOERROR")
    assert request["client"][0] == "127.0.0.2"


async def test_no_upstream_answer_is_servfail() -> None:
    silent = Upstream(Listen("127.0.0.1", free_port()), timeout=0.2)
    await silent.start(None)
    learnt: list[str] = []

    async def learn(client: Client, name: str, ips: list[str], ttl: int) -> None:
        learnt.append(name)

    proxy = DnsProxy(Listen("127.0.0.1", 53), lambda: {}, lambda ip: FREE, silent, learn)
    try:
        wire = await proxy.handle(dns.message.make_query("api.world.test", "A").to_wire(),
                                  ("127.0.0.3", 5353))
    finally:
        silent.close()
    assert wire is not None
    assert dns.message.from_wire(wire).rcode() == dns.rcode.SERVFAIL
    assert learnt == []


async def test_a_redirected_query_goes_to_the_server_the_pod_asked() -> None:
    """A query the datapath redirected (sent by the pod to another server than the node's
    DNS address) is checked against rules.dns, forwarded to that server, not to the node's
    upstream, cluster names included, and learnt; its flows name that server."""
    node_world, node_port = worlddns.start({"api.world.test": ["192.0.2.201"]})
    asked, asked_port = worlddns.start({"api.world.test": ["198.51.100.7"],
                                        "web.default.svc.cluster.local": ["198.51.100.8"]})
    upstream = Upstream(Listen("127.0.0.1", node_port))
    await upstream.start(None)
    upstreams = Upstreams(None)
    learnt: list[tuple[str, list[str]]] = []
    flows: list[dict[str, Any]] = []

    async def learn(client: Client, name: str, ips: list[str], ttl: int) -> None:
        learnt.append((name, ips))

    clients = {"127.0.0.2": RULED, "127.0.0.3": FREE}
    proxy = DnsProxy(Listen("127.0.0.1", 53), lambda: SERVICES, clients.get, upstream, learn,
                     flows.append, upstreams=upstreams)
    server = ("127.0.0.1", asked_port)

    async def ask(name: str, source: str) -> dns.message.Message:
        wire = await proxy.handle(dns.message.make_query(name, "A").to_wire(), (source, 5353),
                                  server=server)
        assert wire is not None
        return dns.message.from_wire(wire)

    try:
        reply = await ask("api.world.test", "127.0.0.2")
        refused = await ask("other.world.test", "127.0.0.2")
        cluster = await ask("web.default.svc.cluster.local", "127.0.0.3")
    finally:
        upstream.close()
        upstreams.close()
        node_world.close()
        asked.close()
    assert [rd.address for rrset in reply.answer for rd in rrset] == ["198.51.100.7"]
    assert refused.rcode() == dns.rcode.REFUSED
    assert [rd.address for rrset in cluster.answer for rd in rrset] == ["198.51.100.8"]
    assert ("api.world.test.", ["198.51.100.7"]) in learnt
    assert {f["server"] for f in flows} == {server}



MANY = [f"192.0.2.{100 + i}" for i in range(40)]
"""An answer of ~690 bytes: the world sends it truncated over UDP, whole over TCP."""


@dataclass
class Many:
    proxy: DnsProxy
    listen: Listen
    world_port: int
    learnt: list[tuple[str, list[str]]]


@pytest.fixture
async def many() -> AsyncIterator[Many]:
    """The proxy in front of a world server holding many.world.test."""
    world, world_port = worlddns.start({"many.world.test": MANY})
    upstream = Upstream(Listen("127.0.0.1", world_port))
    await upstream.start(None)
    upstreams = Upstreams(None)
    learnt: list[tuple[str, list[str]]] = []

    async def learn(client: Client, name: str, ips: list[str], ttl: int) -> None:
        learnt.append((name, ips))

    listen = Listen("127.0.0.1", free_port())
    proxy = DnsProxy(listen, lambda: SERVICES, {"127.0.0.3": FREE}.get, upstream, learn,
                     upstreams=upstreams)
    server = DnsServer(listen, lambda: SERVICES, proxy.handle)
    await server.start(None)
    try:
        yield Many(proxy, listen, world_port, learnt)
    finally:
        await server.close()
        upstream.close()
        upstreams.close()
        world.close()


def _addresses(reply: dns.message.Message) -> list[str]:
    return sorted(rd.address for rrset in reply.answer for rd in rrset)


async def test_a_tcp_query_is_forwarded_over_tcp_and_a_large_answer_arrives_whole(
        many: Many) -> None:
    """RFC 7766: a query that came over TCP leaves over TCP, so an answer larger than 512
    bytes comes back whole (the world's server truncates it over UDP)."""
    query = dns.message.make_query("many.world.test", "A")
    direct_udp = await dns.asyncquery.udp(query, "127.0.0.1", port=many.world_port, timeout=5)
    assert direct_udp.flags & dns.flags.TC and not direct_udp.answer  # the server's UDP
    reply = await dns.asyncquery.tcp(query, "127.0.0.1", port=many.listen.port, timeout=5,
                                     source="127.0.0.3")
    assert not reply.flags & dns.flags.TC
    assert len(reply.to_wire()) > 512
    assert _addresses(reply) == sorted(MANY)
    assert [(name, sorted(ips)) for name, ips in many.learnt] == [
        ("many.world.test.", sorted(MANY))]


async def test_a_truncated_udp_answer_is_asked_again_over_tcp_and_learnt_whole(
        many: Many) -> None:
    """The UDP client gets the server's truncated answer (and retries over TCP itself); the
    proxy has asked again over TCP, so every address is learnt before that answer leaves."""
    query = dns.message.make_query("many.world.test", "A")
    udp = await dns.asyncquery.udp(query, "127.0.0.1", port=many.listen.port, timeout=5,
                                   source="127.0.0.3")
    assert udp.flags & dns.flags.TC and not udp.answer
    assert [(name, sorted(ips)) for name, ips in many.learnt] == [
        ("many.world.test.", sorted(MANY))]
    fallback, used_tcp = await dns.asyncquery.udp_with_fallback(
        query, "127.0.0.1", port=many.listen.port, timeout=5, source="127.0.0.3")
    assert used_tcp and _addresses(fallback) == sorted(MANY)


async def test_a_redirected_tcp_query_goes_over_tcp_to_the_server_asked(many: Many) -> None:
    wire = await many.proxy.handle(dns.message.make_query("many.world.test", "A").to_wire(),
                                   ("127.0.0.3", 5353), TCP_MAX,
                                   server=("127.0.0.1", many.world_port))
    assert wire is not None
    assert _addresses(dns.message.from_wire(wire)) == sorted(MANY)
