"""One run of the fault suite: build the system, work and inject faults for a while, stop,
let it converge, check the history and the end state, tear down, report."""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from bulkhead.reserved import RESERVED_BY_ID
from bulkhead.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    agent_pb2,
    endpoint_pb2,
    endpoint_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
)

from . import checker, nospace
from .history import History, Op, Probe
from .nemesis import Nemesis
from .soak import Soak
from .system import System, leftovers, running
from .workload import Workload

CONVERGE_SECONDS = 60.0
ENDPOINT_PACE = 0.2
IDENTITY_PACE = 0.3
POLICY_PACE = (2.0, 5.0)
PROBE_PACE = 0.5


@dataclass
class Report:
    seed: int
    seconds: float
    faults: Counter[str] = field(default_factory=Counter)
    ops: dict[str, Counter[str]] = field(default_factory=dict)
    toggles: int = 0
    probes_checked: int = 0
    probes_in_windows: int = 0
    converged_s: float = 0.0
    anomalies: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)     # the soak's memory and lag lines

    def lines(self) -> list[str]:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        ops = "; ".join(f"{kind} " + "/".join(f"{n} {outcome}" for outcome, n in
                                              sorted(c.items()))
                        for kind, c in sorted(self.ops.items()))
        total = sum(sum(c.values()) for c in self.ops.values())
        out = [f"seed {self.seed}, {self.seconds:.0f} s of work",
               f"faults injected: {sum(self.faults.values())} ({faults})",
               f"operations checked: {total} ({ops})",
               f"policy switches: {self.toggles}; probes checked: {self.probes_checked} "
               f"(another {self.probes_in_windows} fell in convergence windows)",
               f"agents equal to the control plane {self.converged_s:.1f} s after the faults "
               f"stopped" if self.converged_s >= 0 else "agents did not converge"]
        out += self.extra
        out += [f"ANOMALY: {a}" for a in self.anomalies]
        out.append(f"anomalies: {len(self.anomalies)}")
        return out


async def _pages(call: Callable[[str], Any], items: str) -> list[Any]:
    found: list[Any] = []
    token = ""
    while True:
        page = await call(token)
        found += list(getattr(page, items))
        token = page.next_page_token
        if not token:
            return found


class Run:
    def __init__(self, seconds: float, seed: int, faults: bool,
                 say: Callable[[str], None], nospace: bool = True,
                 sample_every: float = 0.0) -> None:
        self.seconds = seconds
        self.nospace = nospace
        self.sample_every = sample_every
        self.soak = Soak()
        self.rng = random.Random(seed)
        self.report = Report(seed, seconds)
        self.faults = faults
        self.say = say
        self.history = History()
        self.began = time.time()

    async def execute(self) -> Report:
        stack = contextlib.ExitStack()
        try:
            self.say("building: 3 etcd members, 2 control-plane replicas, 2 nodes with agents")
            system = await asyncio.to_thread(
                stack.enter_context,
                running(f"--quota-backend-bytes {nospace.QUOTA_BYTES}" if self.nospace else ""))
            suffix = system.lab.suffix
            containers = [c.get_wrapped_container().name for c in system.etcd.containers]
            try:
                await self._work(system)
                await self._check(system)
            finally:
                await asyncio.to_thread(stack.close)
        except BaseException:
            stack.close()
            raise
        self.report.anomalies += [f"left behind: {what}"
                                  for what in await asyncio.to_thread(leftovers, suffix)]
        names = (await asyncio.to_thread(
            subprocess.run, ["docker", "ps", "-a", "--format", "{{.Names}}"],
            capture_output=True, text=True)).stdout.split()
        self.report.anomalies += [f"left behind: container {c}" for c in containers
                                  if c in names]
        return self.report

    async def _work(self, system: System) -> None:
        workload = Workload(system.addresses, self.history, self.rng, system.server.identity,
                            system.lab.suffix)
        await workload.setup()
        probers = system.start_probers(interval=PROBE_PACE, timeout=2.0)
        readers = [asyncio.create_task(self._read(client.name, proc))
                   for client, proc in zip(system.clients, probers, strict=True)]
        nemesis = Nemesis(system, self.history, self.rng, self.say)
        self.began = nemesis.began = time.time()
        self.say(f"working for {self.seconds:.0f} s "
                 f"({'with' if self.faults else 'without'} faults): an endpoint created or "
                 f"deleted every {ENDPOINT_PACE} s, an identity allocated or released every "
                 f"{IDENTITY_PACE} s, the allowing policy switched every {POLICY_PACE[0]:.0f}-"
                 f"{POLICY_PACE[1]:.0f} s, each client probing every {PROBE_PACE} s")
        tasks = [asyncio.create_task(workload.heartbeats()),
                 asyncio.create_task(workload.endpoints(ENDPOINT_PACE)),
                 asyncio.create_task(workload.identities(IDENTITY_PACE)),
                 asyncio.create_task(workload.policies(*POLICY_PACE))]
        sampler = asyncio.create_task(self.soak.sample(system, self.sample_every)) \
            if self.sample_every else None
        chaos = asyncio.create_task(nemesis.run((1.0, 3.0), (1.0, 4.0))) if self.faults \
            else None
        try:
            while time.time() - self.began < self.seconds:
                await asyncio.sleep(min(10.0, self.seconds - (time.time() - self.began)))
                counts = self.history.op_counts()
                self.say(f"[{time.time() - self.began:5.0f}s] operations "
                         f"{sum(sum(c.values()) for c in counts.values())}, policy switches "
                         f"{len(self.history.toggles) - 1}, probes {len(self.history.probes)}, "
                         f"faults {len(self.history.faults)}")
        finally:
            for background in (chaos, sampler):
                if background is not None:
                    background.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await background
            workload.stop.set()
            await asyncio.gather(*tasks[1:])
            if self.nospace:
                await self._nospace(system)
            self.faults_stopped = time.time()
            await self._converge(system)
            for proc in probers:
                proc.kill()
                proc.wait()
            for reader in readers:
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            tasks[0].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tasks[0]
            self.final_allowed = workload.allowed
            await workload.close()
        self.report.faults = Counter(f.kind for f in self.history.faults)
        self.report.ops = self.history.op_counts()
        self.report.toggles = len(self.history.toggles) - 1
        if self.sample_every:
            self.report.extra = self.soak.lines()
            self.report.anomalies += self.soak.anomalies()

    async def _nospace(self, system: System) -> None:
        """etcd's space quota reached: writes refused with a clear error, reads and
        enforcement go on (the probes keep running), and after the operator's recovery
        writes work again, nothing restarted."""
        found = self.report.anomalies
        endpoint = system.etcd.endpoints[0]
        filled = await asyncio.to_thread(nospace.fill, endpoint)
        self.say(f"NOSPACE: etcd refused writes after {filled} MiB of filler; alarms "
                 f"{await asyncio.to_thread(nospace.alarms, endpoint)}")
        async with grpc.aio.insecure_channel(self.rng.choice(system.addresses)) as channel:
            endpoints = endpoint_pb2_grpc.EndpointServiceStub(channel)
            create = endpoint_pb2.CreateEndpointRequest(
                node=system.lab.nodes["n1"].name, namespace="default", name="nospace-refused",
                labels=["k8s:app=nospace", "k8s:io.kubernetes.pod.namespace=default"])
            try:
                await endpoints.Create(create, timeout=10)
                found.append("NOSPACE: an endpoint create was acknowledged while etcd "
                             "refused writes")
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED \
                        or "NOSPACE" not in (exc.details() or ""):
                    found.append(f"NOSPACE: a write was refused without saying why: "
                                 f"{exc.code().name}: {exc.details()}")
            try:
                await admin_pb2_grpc.AdminServiceStub(channel).ListEndpoints(
                    admin_pb2.ListEndpointsRequest(), timeout=10)
            except grpc.aio.AioRpcError as exc:
                found.append(f"NOSPACE: reads failed too: {exc.code().name}: {exc.details()}")
            await asyncio.sleep(3.0)     # the probers go on meanwhile: enforcement is checked
            await asyncio.to_thread(nospace.recover, system.etcd.endpoints)
            recovered = time.time()
            create.name = "nospace-after"
            op = Op("endpoint-create", "nospace-after|" + ",".join(sorted(create.labels)),
                    recovered)
            while True:
                try:
                    made = await endpoints.Create(create, timeout=5)
                except grpc.aio.AioRpcError as exc:
                    if time.time() - recovered > 30:
                        found.append(f"NOSPACE: writes still refused 30 s after recovery: "
                                     f"{exc.code().name}: {exc.details()}")
                        return
                    await asyncio.sleep(0.5)
                    continue
                op.end, op.outcome, op.value = time.time(), "ok", made.identity
                self.history.ops.append(op)
                break
        self.say(f"NOSPACE: recovered (compact, defragment, disarm); writes accepted again "
                 f"after {op.end - recovered:.1f} s, nothing restarted")

    async def _read(self, client: str, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        while True:
            line = await asyncio.to_thread(proc.stdout.readline)
            if not line:
                return
            start, end, result = line.split()
            self.history.probes.append(Probe(client, float(start), float(end), result))

    async def _converge(self, system: System) -> None:
        """Every agent's ipcache map equal to the control plane's ipcache, within a bound."""
        deadline = time.time() + CONVERGE_SECONDS
        async with grpc.aio.insecure_channel(system.addresses[0]) as channel:
            admin = admin_pb2_grpc.AdminServiceStub(channel)
            while True:
                want = {e.prefix: e.identity for e in await _pages(
                    lambda t: admin.ListIPCache(admin_pb2.ListIPCacheRequest(page_token=t),
                                                timeout=10), "entries")}
                differ = []
                for short in sorted(system.lab.nodes):
                    rows = await asyncio.to_thread(self._agent_ipcache, system, short)
                    missing = {p: i for p, i in want.items() if rows.get(p) != i}
                    # Nodes' own addresses (reserved identities) come from node records.
                    stale = {p for p, i in rows.items()
                             if p not in want and i not in RESERVED_BY_ID}
                    if missing or stale:
                        differ.append(f"{short}: {len(missing)} missing or different "
                                      f"({sorted(missing)[:3]}), {len(stale)} stale "
                                      f"({sorted(stale)[:3]})")
                if not differ:
                    self.report.converged_s = time.time() - self.faults_stopped
                    return
                if time.time() > deadline:
                    self.report.converged_s = -1
                    self.report.anomalies.append(
                        f"agents differ from the control plane's ipcache "
                        f"{CONVERGE_SECONDS:.0f} s after the faults stopped: "
                        + "; ".join(differ))
                    return
                await asyncio.sleep(0.5)

    @staticmethod
    def _agent_ipcache(system: System, short: str) -> dict[str, int]:
        try:
            dump = system.lab.agent(short).DumpMap(agent_pb2.DumpMapRequest(map="ipcache"),
                                                   timeout=5)
        except grpc.RpcError:
            return {}
        return {r.fields["IP PREFIX/ADDRESS"]: int(r.fields["IDENTITY"]) for r in dump.rows}

    async def _check(self, system: System) -> None:
        async with grpc.aio.insecure_channel(system.addresses[0]) as channel:
            admin = admin_pb2_grpc.AdminServiceStub(channel)
            endpoints = await _pages(lambda t: admin.ListEndpoints(
                admin_pb2.ListEndpointsRequest(namespace="default", page_token=t),
                timeout=10), "endpoints")
            identities = await _pages(lambda t: admin.ListIdentities(
                admin_pb2.ListIdentitiesRequest(page_token=t), timeout=10), "identities")
            policies = await policy_pb2_grpc.PolicyServiceStub(channel).List(
                policy_pb2.ListPoliciesRequest(), timeout=10)
        found = self.report.anomalies
        found += checker.endpoints(self.history, {e.name for e in endpoints})
        found += checker.identities(self.history, {i.id: tuple(sorted(i.labels))
                                                   for i in identities})
        present = any(p.name == "chaos-allow" for p in policies.policies)
        found += checker.policy(self.history, present)
        wrong, checked, skipped = checker.probes(self.history, self.began)
        found += wrong
        self.report.probes_checked, self.report.probes_in_windows = checked, skipped
        for short, node in sorted(system.lab.nodes.items()):
            if node.proc is None or node.proc.poll() is not None:
                found.append(f"agent {short} is not running at the end")


async def run(seconds: float, seed: int, *, faults: bool = True, nospace: bool = True,
              sample_every: float = 0.0, say: Callable[[str], None] = print) -> Report:
    return await Run(seconds, seed, faults, say, nospace, sample_every).execute()
