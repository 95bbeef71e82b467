"""The DNS proxy's own wire reading (nodeagent.dns.wire) agrees with dnspython."""

from __future__ import annotations

import dns.message
import dns.rcode
import dns.rrset

from nodeagent.dns import wire


def test_question_of_a_query() -> None:
    query = dns.message.make_query("API.World.Test.", "AAAA", use_edns=True)
    name, qtype, end = wire.question(query.to_wire()) or ("", 0, 0)
    assert (name, wire.qtype_text(qtype)) == ("api.world.test.", "AAAA")
    assert query.to_wire()[12:end].endswith(b"\x00\x00\x1c\x00\x01")


def test_what_is_not_one_plain_question_is_left_to_dnspython() -> None:
    query = dns.message.make_query("api.world.test.", "A")
    reply = dns.message.make_response(query).to_wire()
    assert wire.question(reply) is None                     # a response
    assert wire.question(query.to_wire()[:14]) is None      # cut short
    assert wire.question(b"\x00" * 11) is None


def test_refused_echoes_id_flags_and_question() -> None:
    query = dns.message.make_query("other.world.test.", "A")
    _, _, end = wire.question(query.to_wire()) or ("", 0, 0)
    reply = dns.message.from_wire(wire.refused(query.to_wire(), end))
    assert reply.id == query.id and reply.rcode() == dns.rcode.REFUSED
    assert reply.question == query.question and not reply.answer
    assert dns.message.from_wire(wire.servfail(query.to_wire(), end)).rcode() == \
        dns.rcode.SERVFAIL


def test_answers_reads_a_records_cnames_and_the_smallest_ttl() -> None:
    query = dns.message.make_query("www.world.test.", "A")
    reply = dns.message.make_response(query)
    reply.answer.append(dns.rrset.from_text("www.world.test.", 60, "IN", "CNAME",
                                            "api.world.test."))
    reply.answer.append(dns.rrset.from_text_list("api.world.test.", 30, "IN", "A",
                                                 ["192.0.2.201", "192.0.2.202"]))
    rcode, ips, cnames, ttl = wire.answers(reply.to_wire()) or ("", [], [], 0)
    assert (rcode, sorted(ips), cnames, ttl) == (
        "NOERROR", ["192.0.2.201", "192.0.2.202"], ["api.world.test."], 30)
    reply.answer.clear()
    reply.set_rcode(dns.rcode.NXDOMAIN)
    assert wire.answers(reply.to_wire()) == ("NXDOMAIN", [], [], 0)
    assert wire.answers(b"\x00\x01") is None
