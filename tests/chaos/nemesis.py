"""Faults, one at a time, chosen and timed by a seeded random generator so that a printed seed
replays the same schedule: replicas and agents SIGKILLed (and started again) or SIGSTOPped
(and continued), etcd members killed (the leader among them) or cut off the network. Every
fault is undone before the next and at the end, so the system is whole again when it stops."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Callable

from .history import Fault, History
from .system import System

KINDS = ("kill-replica", "pause-replica", "kill-agent", "pause-agent", "kill-etcd",
         "kill-etcd-leader", "partition-etcd")


class Nemesis:
    def __init__(self, system: System, history: History, rng: random.Random,
                 say: Callable[[str], None]) -> None:
        self.system = system
        self.history = history
        self.rng = rng
        self.say = say
        self.began = time.time()

    async def run(self, gap: tuple[float, float], duration: tuple[float, float]) -> None:
        while True:
            await asyncio.sleep(self.rng.uniform(*gap))
            kind = self.rng.choice(KINDS)
            await self.inject(kind, self.rng.uniform(*duration))

    async def inject(self, kind: str, seconds: float) -> None:
        lab = self.system.lab
        replica = self.rng.choice(lab.replicas)
        node = self.rng.choice(sorted(lab.nodes))
        member = self.rng.randrange(len(self.system.etcd.endpoints))
        if kind == "kill-etcd-leader":
            leader = await asyncio.to_thread(self.system.etcd_leader)
            member = member if leader is None else leader
        target = {"kill-replica": replica.name, "pause-replica": replica.name,
                  "kill-agent": node, "pause-agent": node}.get(kind, f"etcd member {member}")
        fault = Fault(kind, target, time.time())
        self.history.faults.append(fault)
        self.say(f"[{fault.start - self.began:5.0f}s] fault: {kind} {target} for "
                 f"{seconds:.1f} s")
        # Undoing runs even when the run is cancelled mid-fault: the system ends whole.
        if kind == "kill-replica":
            replica.stop(signal.SIGKILL)
            try:
                await asyncio.sleep(seconds)
            finally:
                await asyncio.shield(asyncio.to_thread(replica.start))
        elif kind == "pause-replica":
            assert replica.proc is not None
            replica.proc.send_signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(seconds)
            finally:
                replica.proc.send_signal(signal.SIGCONT)
        elif kind == "kill-agent":
            lab.kill_agent(node)
            try:
                await asyncio.sleep(seconds)
            finally:
                await asyncio.shield(asyncio.to_thread(lab.start_agent, node))
        elif kind == "pause-agent":
            proc = lab.nodes[node].proc
            assert proc is not None
            proc.send_signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(seconds)
            finally:
                proc.send_signal(signal.SIGCONT)
        elif kind in ("kill-etcd", "kill-etcd-leader"):
            await asyncio.to_thread(self.system.etcd.kill_member, member)
            try:
                await asyncio.sleep(seconds)
            finally:
                await asyncio.shield(asyncio.to_thread(self.system.etcd.start_member, member))
        else:
            await asyncio.to_thread(self.system.etcd.partition, member)
            try:
                await asyncio.sleep(seconds)
            finally:
                await asyncio.shield(asyncio.to_thread(self.system.etcd.heal, member))
        fault.end = time.time()
