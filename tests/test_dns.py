"""Cluster DNS answers (nodeagent.dns): names -> records from the services an agent holds,
the wire format through dnspython, a server on real sockets in this namespace, the
`--dns-listen` flag and the pods' resolv.conf."""

from __future__ import annotations

import asyncio
from pathlib import Path

import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from bulkhead.v1 import types_pb2
from controlplane.store.embedded import free_port
from integration.lab import dnsconf
from nodeagent.dns.answer import lookup, respond
from nodeagent.dns.listen import DEFAULT_LISTEN, Listen, parse_listen
from nodeagent.dns.server import DnsServer


def backend(ip: str, port: int = 80) -> types_pb2.ServiceBackend:
    return types_pb2.ServiceBackend(ip=ip, port=port, protocol="TCP")


SERVICES = {
    "default/web": types_pb2.Service(namespace="default", name="web", cluster_ip="10.96.0.10",
                                     backends=[backend("10.0.1.5")]),
    "empire/deathstar": types_pb2.Service(namespace="empire", name="deathstar",
                                          cluster_ip="10.96.0.11"),
    # A backend per port: the same pod twice.
    "default/db": types_pb2.Service(namespace="default", name="db", headless=True, backends=[
        backend("10.0.2.10", 5432), backend("10.0.1.9", 5432), backend("10.0.2.10", 9187)]),
    "default/empty": types_pb2.Service(namespace="default", name="empty", headless=True),
}


def ask(name: str, rdtype: str = "A", services: dict[str, types_pb2.Service] | None = None,
        **kw: object) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    wire = respond(query.to_wire(), SERVICES if services is None else services)
    assert wire is not None
    reply = dns.message.from_wire(wire)
    assert reply.id == query.id
    return reply


def addresses(reply: dns.message.Message) -> list[str]:
    return [rd.address for rrset in reply.answer for rd in rrset]


def test_a_service_name_is_its_cluster_ip() -> None:
    reply = ask("web.default.svc.cluster.local")
    assert reply.rcode() == dns.rcode.NOERROR
    assert addresses(reply) == ["10.96.0.10"]
    assert reply.flags & dns.flags.AA
    assert reply.answer[0].ttl == 5
    assert addresses(ask("deathstar.empire.svc.cluster.local.")) == ["10.96.0.11"]


def test_names_are_case_insensitive_and_echoed_as_asked() -> None:
    reply = ask("Web.DEFAULT.svc.Cluster.Local")
    assert addresses(reply) == ["10.96.0.10"]
    assert str(reply.question[0].name) == "Web.DEFAULT.svc.Cluster.Local."


def test_a_headless_service_is_its_backends_ips_once_each() -> None:
    # An RRset is a set: the wire order of its records means nothing (dnspython's is not fixed).
    assert sorted(addresses(ask("db.default.svc.cluster.local"))) == ["10.0.1.9", "10.0.2.10"]
    assert lookup(dns.message.make_query("db.default.svc.cluster.local", "A").question[0].name,
                  SERVICES) == ["10.0.1.9", "10.0.2.10"]


def test_known_names_without_addresses_are_noerror_without_answer() -> None:
    for name, rdtype in [("web.default.svc.cluster.local", "AAAA"),
                         ("web.default.svc.cluster.local", "TXT"),
                         ("empty.default.svc.cluster.local", "A"),   # headless, no backends
                         ("default.svc.cluster.local", "A"),         # a namespace with services
                         ("svc.cluster.local", "A"), ("cluster.local", "A")]:
        reply = ask(name, rdtype)
        assert (reply.rcode(), reply.answer) == (dns.rcode.NOERROR, []), name
        assert reply.authority[0].rdtype == dns.rdatatype.SOA, name


def test_unknown_names_in_the_zone_are_nxdomain_with_the_soa() -> None:
    for name in ["nosuch.default.svc.cluster.local", "web.empire.svc.cluster.local",
                 "nosuch.svc.cluster.local", "web.default.cluster.local",
                 "x.web.default.svc.cluster.local",
                 # what the search path tries first for an absolute-looking name
                 "web.default.svc.cluster.local.default.svc.cluster.local"]:
        reply = ask(name)
        assert reply.rcode() == dns.rcode.NXDOMAIN, name
        assert reply.flags & dns.flags.AA
        assert reply.authority[0].rdtype == dns.rdatatype.SOA


def test_names_outside_the_zone_are_nxdomain_and_not_forwarded() -> None:
    for name in ["example.org", "web.default", "web"]:
        reply = ask(name)
        assert reply.rcode() == dns.rcode.NXDOMAIN, name
        assert not reply.flags & dns.flags.AA
        assert not reply.flags & dns.flags.RA


def test_a_service_removed_from_the_state_stops_resolving() -> None:
    services = dict(SERVICES)
    assert addresses(ask("web.default.svc.cluster.local", services=services))
    del services["default/web"]
    assert ask("web.default.svc.cluster.local", services=services).rcode() == dns.rcode.NXDOMAIN


def test_a_reply_too_large_for_udp_is_truncated_and_whole_over_tcp() -> None:
    many = {"default/big": types_pb2.Service(
        namespace="default", name="big", headless=True,
        backends=[backend(f"10.0.{i // 250}.{i % 250 + 1}") for i in range(100)])}
    query = dns.message.make_query("big.default.svc.cluster.local", "A")
    udp = dns.message.from_wire(respond(query.to_wire(), many) or b"")
    assert udp.flags & dns.flags.TC and udp.answer == []
    tcp = dns.message.from_wire(respond(query.to_wire(), many, max_size=65535) or b"")
    assert len(addresses(tcp)) == 100 and not tcp.flags & dns.flags.TC
    # An EDNS client that accepts larger datagrams gets them whole.
    edns = dns.message.make_query("big.default.svc.cluster.local", "A", use_edns=0,
                                  payload=4096)
    assert len(addresses(dns.message.from_wire(respond(edns.to_wire(), many) or b""))) == 100


def test_what_is_not_a_query_gets_formerr_or_nothing() -> None:
    assert respond(b"\x12", SERVICES) is None                       # not even a header
    formerr = respond(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff", SERVICES)
    assert formerr is not None
    reply = dns.message.from_wire(formerr)
    assert (reply.id, reply.rcode()) == (0x1234, dns.rcode.FORMERR)
    response = dns.message.make_response(dns.message.make_query("web.default.svc."
                                                                "cluster.local", "A"))
    assert respond(response.to_wire(), SERVICES) is None             # replies are not answered
    notify = dns.message.make_query("cluster.local", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    got = dns.message.from_wire(respond(notify.to_wire(), SERVICES) or b"")
    assert got.rcode() == dns.rcode.NOTIMP


async def test_the_server_answers_over_udp_and_tcp_from_the_live_services() -> None:
    services = dict(SERVICES)
    listen = Listen("127.0.0.1", free_port())
    server = DnsServer(listen, lambda: services)
    await server.start(None)
    try:
        query = dns.message.make_query("web.default.svc.cluster.local", "A")
        udp = await asyncio.to_thread(dns.query.udp, query, listen.ip, 3, listen.port)
        tcp = await asyncio.to_thread(dns.query.tcp, query, listen.ip, 3, listen.port)
        assert addresses(udp) == addresses(tcp) == ["10.96.0.10"]
        services["default/web"] = types_pb2.Service(namespace="default", name="web",
                                                    cluster_ip="10.96.0.99")
        udp = await asyncio.to_thread(dns.query.udp, query, listen.ip, 3, listen.port)
        assert addresses(udp) == ["10.96.0.99"]
    finally:
        await server.close()


async def test_an_address_already_served_is_refused_naming_the_flag() -> None:
    listen = Listen("127.0.0.1", free_port())
    first = DnsServer(listen, lambda: SERVICES)
    await first.start(None)
    try:
        with pytest.raises(OSError, match=f"--dns-listen {listen}: Address already in use"):
            await DnsServer(listen, lambda: SERVICES).start(None)
    finally:
        await first.close()


def test_dns_listen_flag() -> None:
    assert parse_listen(DEFAULT_LISTEN) == Listen("169.254.1.1", 53)
    assert parse_listen("10.0.0.1") == Listen("10.0.0.1", 53)
    assert parse_listen("192.168.1.1:5353") == Listen("192.168.1.1", 5353)
    assert parse_listen("none") is None
    for bad in ["localhost:53", "10.0.0.1:x", "10.0.0.1:0", "::1:53"]:
        with pytest.raises(ValueError, match="--dns-listen"):
            parse_listen(bad)


def test_the_default_address_is_the_pods_gateway() -> None:
    from nodeagent.datapath.netlink import GATEWAY_IP

    assert parse_listen(DEFAULT_LISTEN) == Listen(GATEWAY_IP, 53)


def test_a_pods_resolv_conf_has_the_kubernetes_search_path(tmp_path: Path) -> None:
    path = dnsconf.write("bhl-x-pod-a", "empire", root=tmp_path)
    assert path == tmp_path / "bhl-x-pod-a" / "resolv.conf"
    lines = path.read_text().splitlines()
    assert lines[1:] == ["search empire.svc.cluster.local svc.cluster.local cluster.local",
                         "nameserver 169.254.1.1", "options ndots:5"]
    dnsconf.write("bhl-x-pod-b", "default", root=tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "resolv.conf").write_text("nameserver 10.0.0.1\n")
    (tmp_path / "bhl-x-mine").mkdir()
    (tmp_path / "bhl-x-mine" / "resolv.conf").write_text("nameserver 10.0.0.1\n")
    dnsconf.remove("bhl-x-pod-a", root=tmp_path)
    assert not (tmp_path / "bhl-x-pod-a").exists()
    dnsconf.remove_prefix("bhl-x-", root=tmp_path)
    assert not (tmp_path / "bhl-x-pod-b").exists()
    # Files bulkhead did not write stay.
    assert (tmp_path / "other" / "resolv.conf").exists()
    assert (tmp_path / "bhl-x-mine" / "resolv.conf").exists()
    dnsconf.remove("never-made", root=tmp_path)
