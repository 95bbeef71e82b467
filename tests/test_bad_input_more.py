"""More bad input that used to end in INTERNAL, UNKNOWN or RESOURCE_EXHAUSTED: each gets its
own status naming the field, reaches the client whole, and stores nothing."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest

from bulkhead.rpcerror import field_violations
from bulkhead.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    endpoint_pb2,
    endpoint_pb2_grpc,
    flow_pb2,
    identity_pb2,
    identity_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    observer_pb2,
    observer_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    types_pb2,
)
from controlplane.observe.relay import AGENT_TIMEOUT
from controlplane.store.embedded import free_port
from tests.conftest import Replica, ReplicaFactory
from tests.test_bad_input import stored

pytestmark = pytest.mark.timeout(120)

POLICY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: {name}
spec:
  endpointSelector:
    matchLabels:
{labels}
  ingress:
  - fromEndpoints:
    - matchLabels:
        app: web
"""


def policy(name: str = "p", labels: str = "      app: db") -> str:
    return POLICY.format(name=name, labels=labels)


async def apply_error(replica: Replica, text: str) -> grpc.aio.AioRpcError:
    stub = policy_pb2_grpc.PolicyServiceStub(replica.channel())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Apply(policy_pb2.ApplyPoliciesRequest(yaml=text))
    return err.value


YAML_CASES = [
    ("complex key at the top", "? [a]\n: b\n", "document", "not a list (line 1, column 3)"),
    ("mapping as a key", "? {a: 1}\n: b\n", "document", "not a mapping (line 1, column 3)"),
    ("complex key in a selector", policy(labels="      ? [a]\n      : b"),
     "spec.endpointSelector.matchLabels", "not a list (line 8, column 9)"),
    ("integer key", policy(labels="      1: b"), "spec.endpointSelector.matchLabels",
     "not an integer"),
    ("null key", policy(labels="      null: b"), "spec.endpointSelector.matchLabels",
     "not null"),
    ("duplicate key", policy(labels="      app: a\n      app: b"), "yaml", "duplicate key 'app'"),
    ("duplicate integer key", "1: a\n1: b\n", "yaml", "duplicate key 1"),
    ("billion laughs", 'a: &a ["lol","lol"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
     "c: [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n", "yaml", "aliases are not allowed"),
    ("python object tag", "!!python/object/apply:os.system [echo hi]\n", "yaml",
     "could not determine a constructor"),
    # Loading stops at the first document over the limit (not 100,000 documents later).
    ("100,000 documents", "a: 1\n---\n" * 100_000, "file", "more than 256 documents"),
    ("200,000 empty documents", "---\n" * 200_000, "file", "more than 256 documents"),
]


@pytest.mark.parametrize(("case", "text", "field", "words"), YAML_CASES,
                         ids=[c[0] for c in YAML_CASES])
async def test_odd_yaml_is_invalid_argument_with_its_path(
        replicas: ReplicaFactory, case: str, text: str, field: str, words: str) -> None:
    replica = await replicas()
    error = await apply_error(replica, text)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    found = {v.field: v.description for v in field_violations(error)}
    assert field in found, found
    assert words in found[field]
    assert await stored(replica) == []


# -- echoed values are capped: the real error reaches the client ---------------------------------

HUGE = "x" * (1 << 20)


async def test_a_100kb_policy_name_gets_its_invalid_argument(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    error = await apply_error(replica, policy(name="N" * 100_000))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    [violation] = field_violations(error)
    assert violation.field == "metadata.name"
    assert "is not a valid name" in violation.description
    assert "100000 bytes" in violation.description   # what was cut is said, not shown
    assert len(violation.description) < 1000
    assert await stored(replica) == []


async def test_a_1mb_node_name_gets_not_found(replicas: ReplicaFactory) -> None:
    stub = node_pb2_grpc.NodeServiceStub((await replicas()).channel())
    for call in (stub.Heartbeat(node_pb2.HeartbeatRequest(name=HUGE)),
                 stub.Deregister(node_pb2.DeregisterNodeRequest(name=HUGE))):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value.details()
        assert "is not registered" in (err.value.details() or "")
        assert len(err.value.details() or "") < 1000


async def test_a_1mb_endpoint_name_gets_its_own_error(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    stub = endpoint_pb2_grpc.EndpointServiceStub(replica.channel())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Get(endpoint_pb2.GetEndpointRequest(namespace="default", name=HUGE))
    assert err.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
    assert len(err.value.details() or "") < 1000
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Create(endpoint_pb2.CreateEndpointRequest(
            node=HUGE[:500_000], namespace=HUGE[:500_000], name=HUGE[:500_000],
            labels=[HUGE[:500_000]], ip=HUGE[:500_000]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert {v.field for v in field_violations(err.value)} == {
        "node", "namespace", "name", "labels[0]", "ip"}
    assert await stored(replica) == []


async def test_a_1mb_holder_or_label_gets_its_own_error(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    stub = identity_pb2_grpc.IdentityServiceStub(replica.channel())
    calls = [stub.Release(identity_pb2.ReleaseIdentityRequest(id=2, holder=HUGE)),
             stub.Allocate(identity_pb2.AllocateIdentityRequest(labels=["k8s:a=" + HUGE])),
             stub.Allocate(identity_pb2.AllocateIdentityRequest(labels=["k8s:a=b"],
                                                                holder=HUGE)),
             stub.Lookup(identity_pb2.LookupIdentityRequest(labels=[HUGE + "=b"]))]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() != grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
        assert err.value.code() != grpc.StatusCode.INTERNAL, err.value.details()
        assert len(err.value.details() or "") <= 1000
    assert await stored(replica) == []


async def test_thousands_of_violations_still_reach_the_client(replicas: ReplicaFactory) -> None:
    """Every violation is clipped, and the list too: the status always fits in the trailers."""
    replica = await replicas()
    values = "\n".join(f"          - {'v' * 60}{i}!" for i in range(1000))
    text = policy(labels="      app: db").replace(
        "        app: web",
        "        app: web\n      matchExpressions:\n      - key: a\n        operator: In\n"
        f"        values:\n{values}")
    error = await apply_error(replica, text)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    violations = field_violations(error)
    assert 10 < len(violations) < 1000
    assert "more" in violations[-1].description


# -- malformed protobuf --------------------------------------------------------------------------

GARBAGE = b"\xff\xff\xff\xff\x0f\x0a\xff"


@pytest.mark.parametrize("method", [
    "/grpc.health.v1.Health/Check",
    "/bulkhead.v1.NodeService/Register",
    "/bulkhead.v1.IdentityService/Allocate",
    "/bulkhead.v1.PolicyService/Apply",
    "/bulkhead.v1.ServiceService/Apply",
    "/bulkhead.v1.AdminService/Status",
    "/bulkhead.v1.ObserverService/GetFlows",
])
async def test_malformed_protobuf_is_invalid_argument(replicas: ReplicaFactory,
                                                      method: str) -> None:
    replica = await replicas()
    async with replica.channel() as channel:
        if method.endswith("GetFlows"):
            call = channel.unary_stream(method)(GARBAGE, timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in call:
                    pass
        else:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await channel.unary_unary(method)(GARBAGE, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert "request" in [v.field for v in field_violations(err.value)]
    assert await stored(replica) == []


@pytest.mark.parametrize("method", [
    "/bulkhead.v1.SubscriptionService/Subscribe",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
])
async def test_a_malformed_stream_message_is_invalid_argument(replicas: ReplicaFactory,
                                                              method: str) -> None:
    replica = await replicas()
    async with replica.channel() as channel:
        call = channel.stream_stream(method)(iter([GARBAGE]), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in call:
                pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert "request" in [v.field for v in field_violations(err.value)]


async def test_a_good_request_still_works_after_garbage(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    async with replica.channel() as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await channel.unary_unary("/bulkhead.v1.IdentityService/Allocate")(GARBAGE)
        allocate = channel.unary_unary(
            "/bulkhead.v1.IdentityService/Allocate",
            request_serializer=identity_pb2.AllocateIdentityRequest.SerializeToString,
            response_deserializer=types_pb2.Identity.FromString)
        made = await allocate(identity_pb2.AllocateIdentityRequest(labels=["k8s:a=b"]))
    assert made.id >= 256


# -- node addresses ------------------------------------------------------------------------------

REGISTER = node_pb2.RegisterNodeRequest


@pytest.mark.parametrize("ip", ["255.255.255.255", "0.0.0.0", "0.1.2.3", "224.0.0.1",
                                "239.255.255.250", "240.0.0.1", "127.0.0.1", "192.0.2.1\0"])
async def test_underlay_ip_must_be_unicast(replicas: ReplicaFactory, ip: str) -> None:
    replica = await replicas()
    stub = node_pb2_grpc.NodeServiceStub(replica.channel())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Register(REGISTER(name="n1", underlay_ip=ip))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(err.value)] == ["underlay_ip"]
    assert await stored(replica) == []


@pytest.mark.parametrize("address", [
    "192.0.2.1:50\0", "\0192.0.2.1:50", "192.0.2.1:5\x000",
    "198.51.100.7:22",        # another host: the relay would dial it
    "10.0.0.1:2379",
    "example.com:80",         # a name resolves to anything
    "192.0.2.1:0", "192.0.2.1:65536", "192.0.2.1:\u00b2", "192.0.2.1:", ":80",
    "::1:80",                 # IPv6 needs brackets
    "[2001:db8::1]:80",
    "[192.0.2.1]:80",         # brackets are for IPv6
])
async def test_agent_address_must_be_on_the_node(replicas: ReplicaFactory, address: str) -> None:
    replica = await replicas()
    stub = node_pb2_grpc.NodeServiceStub(replica.channel())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Register(REGISTER(name="n1", underlay_ip="192.0.2.1", agent_address=address))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert [v.field for v in field_violations(err.value)] == ["agent_address"]
    assert await stored(replica) == []


async def test_addresses_a_node_can_have_are_accepted(replicas: ReplicaFactory) -> None:
    stub = node_pb2_grpc.NodeServiceStub((await replicas()).channel())
    for i, (ip, agent) in enumerate([("192.0.2.1", "192.0.2.1:9000"), ("10.0.0.7", ""),
                                     ("169.254.3.4", "127.0.0.1:4000"),
                                     ("100.64.0.1", "[::1]:4000"),
                                     ("172.16.0.1", "127.0.1.1:1")]):
        node = await stub.Register(REGISTER(name=f"n{i}", underlay_ip=ip, agent_address=agent))
        assert node.agent_address == agent
    # An agent listening on every address is reached at the node's underlay IP.
    for i, agent in enumerate(["0.0.0.0:4244", "[::]:4244", "[0::0]:4244"]):
        node = await stub.Register(REGISTER(name=f"any{i}", underlay_ip="192.0.2.50",
                                            agent_address=agent))
        assert node.agent_address == "192.0.2.50:4244"


@contextlib.asynccontextmanager
async def silent_port() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never says anything: an agent that hangs."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_status_bounds_the_wait_for_silent_agents(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    nodes = node_pb2_grpc.NodeServiceStub(replica.channel())
    async with silent_port() as port:
        for i in range(20):
            await nodes.Register(REGISTER(name=f"n{i}", underlay_ip=f"192.0.2.{i + 1}",
                                          agent_address=f"127.0.0.1:{port}"))
        await replica.cp.cache.wait_for((await replica.cp.etcd.status()).revision)
        observer = observer_pb2_grpc.ObserverServiceStub(replica.channel())
        status = await observer.ObserverStatus(observer_pb2.ObserverStatusRequest(), timeout=30)
    assert len(status.nodes) == 20
    for node in status.nodes:
        assert not node.reachable
        assert node.error == f"no answer within {AGENT_TIMEOUT:g} s"


async def test_health_and_reflection_still_answer_through_the_guard(
        replicas: ReplicaFactory) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    replica = await replicas()
    async with replica.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        checked = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
        names = [s.name async for r in reflect for s in r.list_services_response.service]
    assert "bulkhead.v1.NodeService" in names


class OneFlowAgent(agent_pb2_grpc.AgentServiceServicer):
    """The flow side of an agent's API: one flow held."""

    async def GetFlows(self, request: flow_pb2.GetFlowsRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[flow_pb2.Flow]:
        yield flow_pb2.Flow(time_ns=1, node="live", verdict="FORWARDED", sequence=1,
                            boot_id="b")

    async def AgentStatus(self, request: agent_pb2.AgentStatusRequest,
                          context: grpc.aio.ServicerContext) -> agent_pb2.AgentStatusResponse:
        return agent_pb2.AgentStatusResponse(node="live", flows_held=1, flows_max=10)


async def test_observe_reads_live_agents_beside_silent_and_dead_ones(
        replicas: ReplicaFactory) -> None:
    replica = await replicas()
    agent = grpc.aio.server()
    agent_pb2_grpc.add_AgentServiceServicer_to_server(OneFlowAgent(), agent)
    live_port = agent.add_insecure_port("127.0.0.1:0")
    await agent.start()
    nodes = node_pb2_grpc.NodeServiceStub(replica.channel())
    try:
        async with silent_port() as silent:
            for name, ip, port in [("live", "192.0.2.1", live_port),
                                   ("silent", "192.0.2.2", silent),
                                   ("dead", "192.0.2.3", free_port())]:
                await nodes.Register(REGISTER(name=name, underlay_ip=ip,
                                              agent_address=f"127.0.0.1:{port}"))
            await replica.cp.cache.wait_for((await replica.cp.etcd.status()).revision)
            observer = observer_pb2_grpc.ObserverServiceStub(replica.channel())
            flows = [f async for f in observer.GetFlows(flow_pb2.GetFlowsRequest(last=5),
                                                        timeout=60)]
            status = await observer.ObserverStatus(observer_pb2.ObserverStatusRequest(),
                                                   timeout=60)
    finally:
        await agent.stop(None)
    assert [f.node for f in flows] == ["live"]
    by_node = {n.node: n for n in status.nodes}
    assert by_node["live"].reachable and by_node["live"].flows_held == 1
    assert by_node["silent"].error == f"no answer within {AGENT_TIMEOUT:g} s"
    assert not by_node["dead"].reachable and by_node["dead"].error
