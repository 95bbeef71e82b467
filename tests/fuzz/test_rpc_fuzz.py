"""Every RPC the control plane serves, fuzzed with arbitrary and boundary messages built from
its descriptor (tests/fuzz/protostrategies.py). Properties, for every call:

- the status is never INTERNAL or UNKNOWN (nor UNIMPLEMENTED: the method is served);
- the server process stays up and answers a health check afterwards;
- a refused call leaves etcd as it was (a full dump compared before and after);
- INVALID_ARGUMENT carries field violations, each naming a field.

Streaming RPCs are opened, sent a few messages, read for a bounded number of responses, and
closed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import given
from hypothesis import strategies as st

from bulkhead.rpcerror import field_violations
from tests.fuzz.conftest import FuzzServer
from tests.fuzz.protostrategies import messages
from tests.fuzz.served import Rpc, served_rpcs, tls_only_rpcs
from tests.fuzz.settings import fuzz_settings

CALL_TIMEOUT = 60.0
"""Client deadline of the checks' own calls (health, reflection)."""
UNARY_TIMEOUT = 5.0
"""Client deadline of a fuzzed unary call: a request may legitimately ask the server to wait
(WaitForRevision up to an hour); DEADLINE_EXCEEDED is an accepted outcome."""
STREAM_TIMEOUT = 1.0
"""Client deadline of a fuzzed streaming call: a stream still open then is simply closed."""
STREAM_RESPONSES = 20
"""Responses read from a server-streaming call before it is closed."""
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNIMPLEMENTED}
UNDECIDED = {grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
"""Outcomes after which etcd may have changed (the call was accepted, or cut by the client)."""

RPCS = served_rpcs()
TLS_RPCS = [(r, "admin") for r in tls_only_rpcs()] + [
    (r, "join") for r in tls_only_rpcs() if r.method.name == "Join"]
"""--tls only methods: every one as the admin calls it, and Join on the join port."""


@pytest.fixture(scope="module")
def channel(fuzz_server: FuzzServer) -> Iterator[grpc.Channel]:
    with fuzz_server.open_channel() as ch:
        yield ch


@pytest.fixture(scope="module")
def tls_channels(tls_fuzz_server: FuzzServer) -> Iterator[dict[str, grpc.Channel]]:
    """The admin's channel and the join port's (no client certificate)."""
    with tls_fuzz_server.open_channel() as admin, \
            tls_fuzz_server.open_channel(join=True) as join:
        yield {"admin": admin, "join": join}


def _encode(message: Message) -> bytes:
    return message.SerializeToString()


def _raw(data: bytes) -> bytes:
    return data


def invoke(channel: grpc.Channel, rpc: Rpc, requests: list[Any]) -> grpc.RpcError | None:
    """Makes the call (`requests`: messages, or raw bytes sent as they are); returns its error
    (None when it succeeded or was closed by us)."""
    decode = GetMessageClass(rpc.method.output_type).FromString
    factory = getattr(channel, rpc.kind)
    raw = bool(requests) and isinstance(requests[0], bytes)
    call = factory(rpc.path, request_serializer=_raw if raw else _encode,
                   response_deserializer=decode)
    try:
        if rpc.kind == "unary_unary":
            call(requests[0], timeout=UNARY_TIMEOUT)
        elif rpc.kind == "stream_unary":
            call(iter(requests), timeout=UNARY_TIMEOUT)
        else:
            stream = call(requests[0] if rpc.kind == "unary_stream" else iter(requests),
                          timeout=STREAM_TIMEOUT)
            try:
                for i, _ in enumerate(stream):
                    if i + 1 >= STREAM_RESPONSES:
                        break
            finally:
                stream.cancel()
    except grpc.RpcError as exc:
        return exc
    return None


def _code(error: grpc.RpcError | None) -> grpc.StatusCode:
    if error is None:
        return grpc.StatusCode.OK
    code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
    return code


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def nested(depth: int, field: int, leaf: bytes) -> bytes:
    """`leaf` wrapped `depth` times in length-delimited field `field`: deep nesting on the
    wire, whatever the schema allows (protobuf's decoder stops at 100 levels)."""
    data = leaf
    for _ in range(depth):
        data = _varint(field << 3 | 2) + _varint(len(data)) + data
    return data


RAW = st.one_of(
    st.binary(max_size=64),
    st.builds(nested, st.sampled_from([1, 50, 99, 100, 101, 1000, 5000]),
              st.integers(1, 20), st.binary(max_size=8)),
    st.sampled_from([b"\xff" * 10, b"\x0a\xff\xff\xff\xff\x0f", b"\x08" + b"\xff" * 10,
                     b"\x0b", b"\x0c", b"\x0a\x02\xc3\x28"]),
)
"""Request bytes that need not decode: garbage, deep nesting, truncated or overlong varints,
lone group tags, invalid UTF-8 in a string field."""


@pytest.mark.parametrize("rpc", RPCS, ids=[r.path.lstrip("/") for r in RPCS])
@fuzz_settings()
@given(data=st.data())
def test_rpc_fuzz(fuzz_server: FuzzServer, channel: grpc.Channel, rpc: Rpc,
                  data: st.DataObject) -> None:
    request = messages(rpc.method.input_type)
    if rpc.method.client_streaming:
        requests = data.draw(st.lists(request, max_size=4), label="requests")
    else:
        requests = [data.draw(request, label="request")]
    check_call(fuzz_server, channel, rpc, requests)


@pytest.mark.parametrize("rpc", RPCS, ids=[r.path.lstrip("/") for r in RPCS])
@fuzz_settings()
@given(data=st.data())
def test_rpc_raw_bytes_fuzz(fuzz_server: FuzzServer, channel: grpc.Channel, rpc: Rpc,
                            data: st.DataObject) -> None:
    """The same properties for request bytes that are not (or not quite) a message."""
    if rpc.method.client_streaming:
        requests = data.draw(st.lists(RAW, min_size=1, max_size=3), label="requests")
    else:
        requests = [data.draw(RAW, label="request")]
    check_call(fuzz_server, channel, rpc, requests)


@pytest.mark.parametrize(("rpc", "caller"), TLS_RPCS,
                         ids=[f"{r.path.lstrip('/')}-{c}" for r, c in TLS_RPCS])
@fuzz_settings()
@given(data=st.data())
def test_tls_only_rpc_fuzz(tls_fuzz_server: FuzzServer, tls_channels: dict[str, grpc.Channel],
                           rpc: Rpc, caller: str, data: st.DataObject) -> None:
    """The methods only a --tls control plane serves, through its authorization layer."""
    request = messages(rpc.method.input_type)
    if data.draw(st.booleans(), label="raw"):
        request = RAW  # type: ignore[assignment]
    check_call(tls_fuzz_server, tls_channels[caller], rpc, [data.draw(request, label="request")],
               health=tls_channels["admin"])


def check_call(fuzz_server: FuzzServer, channel: grpc.Channel, rpc: Rpc,
               requests: list[Any], health: grpc.Channel | None = None) -> None:
    """Makes the call and checks every property of the module docstring."""
    before = fuzz_server.dump()
    error = invoke(channel, rpc, requests)
    code = _code(error)
    details = error.details() if error is not None else ""  # type: ignore[attr-defined]
    assert code not in NEVER, f"{rpc.path} answered {code.name}: {details}"
    assert fuzz_server.alive(), f"the control plane died:\n{fuzz_server.log_tail()}"
    answer = health_pb2_grpc.HealthStub(health or channel).Check(
        health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert error is not None
        violations = field_violations(error)
        assert violations, f"INVALID_ARGUMENT without field violations: {details}"
        assert all(v.field for v in violations), f"a violation names no field: {violations}"
    if code not in UNDECIDED:
        assert fuzz_server.dump() == before, f"{rpc.path} refused ({code.name}: {details}) " \
                                             "but changed etcd"


def served_methods(channel: grpc.Channel) -> set[str]:
    """The paths of every method of every service a server lists through reflection."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = list(stub.ServerReflectionInfo(iter([request]), timeout=CALL_TIMEOUT))
    names = [s.name for s in responses[0].list_services_response.service]
    served: set[str] = set()
    pool: Any = descriptor_pool.Default()
    for name in names:
        served.update(f"/{name}/{m.name}" for m in pool.FindServiceByName(name).methods)
    return served


def test_every_served_method_is_fuzzed(channel: grpc.Channel) -> None:
    """What the running control plane lists through reflection is exactly what is fuzzed: a
    new service or method is covered (or this fails), and NOT_SERVED stays true."""
    served, fuzzed = served_methods(channel), {r.path for r in RPCS}
    assert served - fuzzed == set(), "served but not fuzzed"
    assert fuzzed - served == set(), "fuzzed but not served (tests/fuzz/served.py NOT_SERVED)"


def test_every_tls_served_method_is_fuzzed(tls_channels: dict[str, grpc.Channel]) -> None:
    """The same for a --tls control plane (TLS_ONLY stays true)."""
    served = served_methods(tls_channels["admin"])
    fuzzed = {r.path for r in RPCS} | {r.path for r, _ in TLS_RPCS}
    assert served - fuzzed == set(), "served with --tls but not fuzzed"
    assert fuzzed - served == set(), "fuzzed but not served with --tls (served.py TLS_ONLY)"
