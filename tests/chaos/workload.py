"""Continuous work through the control plane's API while faults happen: endpoint churn on two
nodes without agents (their leases kept by heartbeats), identity allocate/release, and the
policy that lets the clients reach the server switched on and off with its convergence waited
for. Every call goes to a replica picked at random and is recorded with its outcome."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import grpc

from bulkhead.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    endpoint_pb2,
    endpoint_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    node_pb2,
    node_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
)

from .history import History, Op, Toggle

NAMESPACE_LABEL = "k8s:io.kubernetes.pod.namespace=default"
CALL_TIMEOUT = 3.0
BASE_POLICY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: chaos-base
  namespace: default
spec:
  endpointSelector:
    matchLabels:
      app: chaos-server
  ingress:
  - fromEndpoints:
    - matchLabels:
        app: nobody
"""
ALLOW_POLICY = """\
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: chaos-allow
  namespace: default
spec:
  endpointSelector:
    matchLabels:
      app: chaos-server
  ingress:
  - fromEndpoints:
    - matchLabels:
        app: chaos-client
    toPorts:
    - ports:
      - port: "80"
        protocol: TCP
"""


class Workload:
    def __init__(self, addresses: list[str], history: History, rng: random.Random,
                 server_identity: int, suffix: str) -> None:
        self.channels = [grpc.aio.insecure_channel(a) for a in addresses]
        self.history = history
        self.rng = rng
        self.server_identity = server_identity
        self.nodes = [f"chaos{suffix}-v{i}" for i in range(2)]
        self.allowed = False
        self.created = 0
        self.live: list[str] = []                     # endpoints that may exist
        self.held: list[tuple[int, str]] = []         # (identity, labels) allocated, not released
        self.stop = asyncio.Event()   # the churn loops end at their next turn

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    async def _record(self, op: Op, call: Callable[[], Awaitable[Any]]) -> Any:
        self.history.ops.append(op)
        try:
            result = await call()
        except grpc.aio.AioRpcError as exc:
            op.failed(exc, time.time())
            return None
        op.end, op.outcome = time.time(), "ok"
        return result

    async def _any_replica(self, call: Callable[[grpc.aio.Channel], Awaitable[Any]]) -> Any:
        """Tries the replicas in turn until one answers: set-up and bookkeeping calls that
        must succeed (not part of the checked history)."""
        while True:
            for channel in self.channels:
                try:
                    return await call(channel)
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.2)

    # -- set-up -------------------------------------------------------------------------------
    async def setup(self) -> None:
        for i, node in enumerate(self.nodes):
            request = node_pb2.RegisterNodeRequest(name=node, underlay_ip=f"10.250.{i}.1")
            await self._any_replica(partial(_register, request))
        applied = await self._any_replica(partial(_apply, BASE_POLICY))
        await self._converged(applied.revision)
        self.history.toggles.append(Toggle(False, 0.0, time.time()))

    # -- loops --------------------------------------------------------------------------------
    async def heartbeats(self) -> None:
        while True:
            for node in self.nodes:
                await self._any_replica(partial(_heartbeat, node))
            await asyncio.sleep(2.0)

    async def endpoints(self, pace: float) -> None:
        while not self.stop.is_set():
            channel = self.rng.choice(self.channels)
            if self.live and (len(self.live) > 12 or self.rng.random() < 0.4):
                name = self.live.pop(self.rng.randrange(len(self.live)))
                await self._record(Op("endpoint-delete", name, time.time()),
                                   partial(_delete_endpoint, channel, name))
            else:
                self.created += 1
                name = f"churn-{self.created}"
                labels = [f"k8s:app=churn{self.rng.randrange(5)}", NAMESPACE_LABEL]
                op = Op("endpoint-create", name + "|" + ",".join(sorted(labels)), time.time())
                request = endpoint_pb2.CreateEndpointRequest(
                    node=self.rng.choice(self.nodes), namespace="default", name=name,
                    labels=labels)
                made = await self._record(op, partial(_create_endpoint, channel, request))
                if made is not None:
                    op.value = made.identity
                if op.outcome != "refused":
                    self.live.append(name)
            await asyncio.sleep(pace)

    async def identities(self, pace: float) -> None:
        while not self.stop.is_set():
            channel = self.rng.choice(self.channels)
            if self.held and (len(self.held) > 6 or self.rng.random() < 0.4):
                ident, key = self.held.pop(self.rng.randrange(len(self.held)))
                await self._record(Op("identity-release", key, time.time(), value=ident),
                                   partial(_release, channel, ident))
            else:
                key = f"k8s:chaos-set={self.rng.randrange(6)}"
                op = Op("identity-allocate", key, time.time())
                got = await self._record(op, partial(_allocate, channel, [key]))
                if got is not None:
                    op.value = got.id
                    self.held.append((got.id, key))
            await asyncio.sleep(pace)

    async def policies(self, low: float, high: float) -> None:
        """Switches the allowing policy, retrying until a replica acknowledges, then waits
        until every agent acked the revision: the window in which probes may see either."""
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.rng.uniform(low, high))
            if not self.stop.is_set():
                await self.toggle()

    async def toggle(self) -> None:
        want = not self.allowed
        start = time.time()
        attempts = 0
        revision = 0
        while not revision:
            attempts += 1
            channel = self.rng.choice(self.channels)
            op = Op("policy-apply" if want else "policy-delete", "chaos-allow", time.time())
            done = await self._record(op, partial(_apply, ALLOW_POLICY, channel) if want
                                      else partial(_delete_policy, channel, "chaos-allow"))
            if done is not None:
                revision = done.revision
            elif op.outcome == "refused" and op.detail.startswith("NOT_FOUND"):
                # An earlier attempt whose answer was lost deleted it: wait for now.
                revision = (await self._any_replica(_status)).etcd.revision
            else:
                await asyncio.sleep(0.3)
        self.allowed = want
        await self._converged(revision)
        self.history.toggles.append(Toggle(want, start, time.time(), attempts))

    async def _converged(self, revision: int) -> None:
        request = subscription_pb2.WaitForRevisionRequest(
            revision=revision, identities=[self.server_identity], timeout_seconds=5)
        while not (await self._any_replica(partial(_wait, request))).converged:
            pass


# -- one call each, on a given channel ---------------------------------------------------------
async def _register(request: node_pb2.RegisterNodeRequest, channel: grpc.aio.Channel) -> Any:
    return await node_pb2_grpc.NodeServiceStub(channel).Register(request, timeout=CALL_TIMEOUT)


async def _heartbeat(node: str, channel: grpc.aio.Channel) -> Any:
    return await node_pb2_grpc.NodeServiceStub(channel).Heartbeat(
        node_pb2.HeartbeatRequest(name=node), timeout=CALL_TIMEOUT)


async def _apply(yaml: str, channel: grpc.aio.Channel) -> Any:
    return await policy_pb2_grpc.PolicyServiceStub(channel).Apply(
        policy_pb2.ApplyPoliciesRequest(yaml=yaml), timeout=CALL_TIMEOUT)


async def _delete_policy(channel: grpc.aio.Channel, name: str) -> Any:
    return await policy_pb2_grpc.PolicyServiceStub(channel).Delete(
        policy_pb2.DeletePolicyRequest(policy=policy_pb2.PolicyRef(
            kind="CiliumNetworkPolicy", namespace="default", name=name)), timeout=CALL_TIMEOUT)


async def _status(channel: grpc.aio.Channel) -> Any:
    return await admin_pb2_grpc.AdminServiceStub(channel).Status(admin_pb2.StatusRequest(),
                                                                 timeout=CALL_TIMEOUT)


async def _wait(request: subscription_pb2.WaitForRevisionRequest,
                channel: grpc.aio.Channel) -> Any:
    return await subscription_pb2_grpc.SubscriptionAdminServiceStub(channel).WaitForRevision(
        request, timeout=10)


async def _create_endpoint(channel: grpc.aio.Channel,
                           request: endpoint_pb2.CreateEndpointRequest) -> Any:
    return await endpoint_pb2_grpc.EndpointServiceStub(channel).Create(request,
                                                                       timeout=CALL_TIMEOUT)


async def _delete_endpoint(channel: grpc.aio.Channel, name: str) -> Any:
    return await endpoint_pb2_grpc.EndpointServiceStub(channel).Delete(
        endpoint_pb2.DeleteEndpointRequest(namespace="default", name=name), timeout=CALL_TIMEOUT)


async def _allocate(channel: grpc.aio.Channel, labels: list[str]) -> Any:
    return await identity_pb2_grpc.IdentityServiceStub(channel).Allocate(
        identity_pb2.AllocateIdentityRequest(labels=labels, holder="chaos"), timeout=CALL_TIMEOUT)


async def _release(channel: grpc.aio.Channel, ident: int) -> Any:
    return await identity_pb2_grpc.IdentityServiceStub(channel).Release(
        identity_pb2.ReleaseIdentityRequest(id=ident, holder="chaos"), timeout=CALL_TIMEOUT)
