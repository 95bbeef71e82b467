"""The HTTP matcher shared by the policy parser, `policy trace` and the node proxy."""

from __future__ import annotations

import pytest

from bulkhead.httprules import (
    HeaderMatch,
    HttpPolicy,
    HttpRequest,
    HttpRule,
    InvalidHttpRule,
    Mismatch,
    from_proto,
    to_proto,
)

LANDING = HttpPolicy([HttpRule(method="POST", path="/v1/request-landing")])


@pytest.mark.parametrize(("method", "target", "allowed"), [
    ("POST", "/v1/request-landing", True),
    ("PUT", "/v1/exhaust-port", False),
    ("POST", "/v1/request-landing1", False),       # whole-value match, not a prefix
    ("POST", "/x/v1/request-landing", False),
    ("post", "/v1/request-landing", False),        # methods are case-sensitive
    ("POST", "/v1/request-landing?x=1", False),    # the target as sent, query included
])
def test_method_and_path_match_the_whole_value(method: str, target: str, allowed: bool) -> None:
    assert LANDING.check(HttpRequest(method, target)).allowed is allowed


def test_rules_are_ored_and_the_first_allowing_one_is_named() -> None:
    policy = HttpPolicy([HttpRule(method="GET"), HttpRule(path="/v1/.*")])
    assert policy.check(HttpRequest("PUT", "/v1/x")).rule == 1
    assert policy.check(HttpRequest("GET", "/other")).rule == 0
    assert not policy.check(HttpRequest("PUT", "/other")).allowed


def test_an_empty_rule_passes_every_request() -> None:
    assert HttpPolicy([HttpRule()]).check(HttpRequest("DELETE", "/anything")).allowed


def test_host_and_headers() -> None:
    policy = HttpPolicy([HttpRule(host="deathstar(\\..*)?", headers=("X-Has-Force: true", "X-Id"))])
    ok = HttpRequest("GET", "/", "deathstar.default.svc.cluster.local",
                     [("x-has-force", "true"), ("X-ID", "7")])
    assert policy.check(ok).allowed
    assert not policy.check(HttpRequest("GET", "/", "deathstar", [("X-Id", "7")])).allowed
    assert not policy.check(HttpRequest("GET", "/", "deathstar",
                                        [("X-Has-Force", "false"), ("X-Id", "7")])).allowed
    assert not policy.check(HttpRequest("GET", "/", "xwing", ok.headers)).allowed


def test_header_match_mismatch_actions_edit_the_request() -> None:
    Headers = list[tuple[str, str]]

    def run(mismatch: Mismatch, headers: Headers) -> tuple[bool, Headers]:
        request = HttpRequest("GET", "/", headers=list(headers))
        verdict = HttpPolicy([HttpRule(header_matches=(HeaderMatch("X-Token", "ok", mismatch),))]
                             ).check(request)
        return verdict.allowed, request.headers

    assert run(Mismatch.FAIL, [("X-Token", "ok")]) == (True, [("X-Token", "ok")])
    assert run(Mismatch.FAIL, [("X-Token", "bad")])[0] is False
    assert run(Mismatch.LOG, [("X-Token", "bad")]) == (True, [("X-Token", "bad")])
    assert run(Mismatch.ADD, []) == (True, [("X-Token", "ok")])
    assert run(Mismatch.DELETE, [("X-Token", "bad"), ("A", "1")]) == (True, [("A", "1")])
    assert run(Mismatch.REPLACE, [("x-token", "bad")]) == (True, [("X-Token", "ok")])


@pytest.mark.parametrize(("rule", "field"), [
    (HttpRule(path="("), "http[0].path"),
    (HttpRule(method="(?<=a)b"), "http[0].method"),       # RE2 has no look-behind
    (HttpRule(headers=("",)), "http[0].headers[0]"),
    (HttpRule(header_matches=(HeaderMatch(" "),)), "http[0].headerMatches[0].name"),
])
def test_bad_rules_are_refused_naming_the_field(rule: HttpRule, field: str) -> None:
    with pytest.raises(InvalidHttpRule) as err:
        HttpPolicy([rule], prefix="http")
    assert err.value.field == field


def test_proto_round_trip() -> None:
    rule = HttpRule("POST", "/v1/.*", "h", ("A: b",), (HeaderMatch("k", "v", Mismatch.REPLACE),))
    assert from_proto(to_proto(rule)) == rule
