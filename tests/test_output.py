"""The one JSON encoder of the CLI (README, "JSON output"): numbers as numbers, sorted keys."""

from __future__ import annotations

import json

from bulkhead.v1 import admin_pb2, subscription_pb2
from cli.output import encode


def test_64_bit_integers_are_numbers_and_maps_are_sorted() -> None:
    first = admin_pb2.StatusResponse(counts={"nodes": 2, "identities": 2**40})
    second = admin_pb2.StatusResponse(counts={"identities": 2**40, "nodes": 2})
    assert encode(first) == encode(second)
    counts = json.loads(encode(first))["counts"]
    assert counts == {"identities": 2**40, "nodes": 2}
    assert list(counts) == ["identities", "nodes"]


def test_plain_values_and_messages_mix_with_one_key_order() -> None:
    pending = subscription_pb2.NodeSubscription(name="n1", acked_revision=172, resumes=3)
    text = encode({"wait": {"pending": [pending], "converged": False}})
    value = json.loads(text)
    assert value["wait"]["pending"][0]["acked_revision"] == 172
    assert value["wait"]["pending"][0]["resumes"] == 3
    assert text.index('"converged"') < text.index('"pending"')
