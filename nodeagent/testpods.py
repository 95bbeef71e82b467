"""Connectivity-test pods on this node (`bulkhead connectivity test`): the agent creates each
one itself — a network namespace, the endpoint (veth, IP, identity) through the endpoint
manager, a small HTTP/UDP server — and runs probes from them or from the node.

Every test pod lives in the namespace `bulkhead-test` and its network namespace is named
`<prefix><pod>`, so leftovers of an interrupted run (the CLI killed, the agent restarted) are
found by that namespace and prefix alone and removed: by the next run's cleanup, and by the
agent when it starts.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bulkhead import log
from bulkhead.errors import FailedPrecondition, FieldViolation, Invalid, NotFound
from bulkhead.v1 import connectivity_pb2 as pb
from nodeagent.datapath import netlink
from nodeagent.endpoints import EndpointTable, LocalEndpoint
from nodeagent.manager import EndpointManager
from nodeagent.pods import netns, processes
from nodeagent.pods.labels import pod_labels
from nodeagent.pods.probe import KINDS

_log = log.get(__name__)

NAMESPACE = "bulkhead-test"
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?")
DEFAULT_TIMEOUT = 2.0
MAX_TIMEOUT = 30.0


def netns_prefix(node: str, node_netns: str | None) -> str:
    """Beside the node's own namespace (a lab's `bulkhead-lab down` removes them with it), or
    named after the node when the agent runs in the host's namespace."""
    if node_netns and not node_netns.startswith("/"):
        return f"{node_netns}-ct-"
    return f"bhct-{node}-"


class TestPods:
    def __init__(self, node: str, node_netns: str | None, node_ip: str,
                 manager: EndpointManager, table: EndpointTable, log_dir: Path) -> None:
        self.node = node
        self.node_netns = node_netns
        self.node_ip = node_ip
        self.manager = manager
        self.table = table
        self.log_dir = log_dir
        self.prefix = netns_prefix(node, node_netns)
        self._lock = asyncio.Lock()

    def netns_name(self, pod: str) -> str:
        return f"{self.prefix}{pod}"

    def _message(self, ep: LocalEndpoint) -> pb.TestPod:
        return pb.TestPod(node=self.node, namespace=NAMESPACE, name=ep.name, ipv4=ep.ip,
                          identity=ep.identity, labels=ep.labels, node_ip=self.node_ip)

    # -- pods -------------------------------------------------------------------------------
    async def create(self, name: str, labels: Sequence[str], ports: Sequence[int]
                     ) -> pb.TestPod:
        problems = []
        if not DNS_LABEL.fullmatch(name):
            problems.append(FieldViolation("name", f"must be a DNS label of at most 32 "
                                                   f"characters, got {name!r}"))
        for i, port in enumerate(ports):
            if not 1 <= port <= 65535:
                problems.append(FieldViolation(f"serve_ports[{i}]", "must be 1-65535"))
        if problems:
            raise Invalid(problems)
        async with self._lock:
            ns = self.netns_name(name)
            await asyncio.to_thread(netns.add_netns, ns)
            try:
                ep = await self.manager.add(netns.path(ns), name, NAMESPACE,
                                            pod_labels(labels, NAMESPACE))
                if ports and not await asyncio.to_thread(netns.pids_in, ns):
                    await asyncio.to_thread(processes.start_ready, [
                        "nsenter", f"--net={netns.path(ns)}", sys.executable, "-m",
                        "nodeagent.pods.server", name,
                        "--ports", ",".join(str(p) for p in ports)],
                        self.log_dir / f"{ns}.log")
            except BaseException:
                await self._remove(name)
                raise
        _log.info("test pod created", pod=name, ip=ep.ip, identity=ep.identity)
        return self._message(ep)

    async def _remove(self, name: str) -> None:
        ns = self.netns_name(name)
        for pid in await asyncio.to_thread(netns.pids_in, ns):
            await asyncio.to_thread(processes.stop, pid, 5.0)
        if self.table.find(NAMESPACE, name) is not None:
            try:
                await self.manager.delete(NAMESPACE, name)
            except NotFound:
                pass
        await asyncio.to_thread(netns.delete_netns, ns)

    async def cleanup(self) -> list[str]:
        """Removes every test pod of this node, known to the endpoint table or only left as
        a network namespace; returns their names."""
        async with self._lock:
            names = {ep.name for ep in self.table.all() if ep.namespace == NAMESPACE}
            names |= {ns[len(self.prefix):]
                      for ns in await asyncio.to_thread(netns.namespaces, self.prefix)}
            for name in sorted(names):
                await self._remove(name)
        if names:
            _log.info("test pods removed", pods=sorted(names))
        return sorted(names)

    # -- probes -----------------------------------------------------------------------------
    def _probe_netns(self, from_pod: str) -> str | None:
        if not from_pod:
            return netlink.ns_path(self.node_netns) if self.node_netns else None
        if self.table.find(NAMESPACE, from_pod) is None:
            raise NotFound(f"no test pod {from_pod!r} on node {self.node}")
        return netns.path(self.netns_name(from_pod))

    async def probe(self, request: pb.ProbeRequest) -> pb.ProbeResult:
        problems = []
        if request.kind not in KINDS:
            problems.append(FieldViolation("kind", f"must be one of {', '.join(KINDS)}, "
                                                   f"got {request.kind!r}"))
        try:
            ipaddress.IPv4Address(request.ip)
        except ValueError:
            problems.append(FieldViolation("ip", f"not an IPv4 address: {request.ip!r}"))
        if request.kind != "icmp" and not 1 <= request.port <= 65535:
            problems.append(FieldViolation("port", "must be 1-65535"))
        timeout = request.timeout_seconds or DEFAULT_TIMEOUT
        if not 0 < timeout <= MAX_TIMEOUT:
            problems.append(FieldViolation("timeout_seconds", f"must be 0-{MAX_TIMEOUT:g}"))
        if problems:
            raise Invalid(problems)
        where = self._probe_netns(request.from_pod)
        argv = [*(["nsenter", f"--net={where}"] if where else []), sys.executable, "-m",
                "nodeagent.pods.probe", request.kind, request.ip, "--port", str(request.port),
                "--method", request.method or "GET", "--path", request.path or "/",
                "--timeout", f"{timeout:g}"]
        started = time.time_ns()
        try:
            done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True,
                                           timeout=timeout + 15)
        except subprocess.TimeoutExpired:
            raise FailedPrecondition(f"the probe did not finish within {timeout + 15:g} s")\
                from None
        if done.returncode != 0:
            raise FailedPrecondition(f"the probe failed: {done.stderr.strip()[-300:]}")
        result = json.loads(done.stdout)
        return pb.ProbeResult(ok=bool(result["ok"]), detail=str(result["detail"]),
                              http_code=int(result.get("http_code", 0)),
                              source_ip=str(result.get("source_ip", "")), started_ns=started)
