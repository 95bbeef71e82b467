"""A real two-node cluster for agent tests: etcd, a control-plane process, one
`bulkhead-agent --datapath bpf` process per node namespace, pods added through the local API.

Everything carries a random suffix (namespaces, node names, cluster name, pin root, sockets)
and ``destroy`` removes all of it even after a half-built start: processes, namespaces (which
take their veths and VXLAN devices along), pins.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from pyroute2 import IPRoute, netns

from bulkhead.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc, types_pb2
from controlplane.store.embedded import free_port
from integration.etcd_process import EtcdProcess
from integration.lab import dnsconf
from nodeagent.proxy.supervisor import stop_orphan

BIN = Path(sys.executable).parent
DATAPATH_TESTS = Path(__file__).resolve().parents[1] / "datapath"
SERVE_PORTS = ("tcp:80", "tcp:81", "udp:5353")


@dataclass
class Pod:
    name: str
    ns: str
    node: str
    ip: str
    identity: int
    ep_id: int

    @property
    def netns_path(self) -> str:
        return f"/var/run/netns/{self.ns}"


@dataclass
class Node:
    short: str
    name: str
    ns: str
    underlay_ip: str
    socket: Path
    log: Path
    metrics_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"


@dataclass
class Replica:
    """One control-plane process; `start` runs it (again) on the same address and state."""

    name: str
    address: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log)
        _wait_cp(self.address, self.proc, self.log)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)   # a test may have stopped it
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@dataclass
class Cluster:
    suffix: str
    tmp: Path
    pin_root: Path
    etcd: EtcdProcess | None = None
    replicas: list[Replica] = field(default_factory=list)
    nodes: dict[str, Node] = field(default_factory=dict)
    pods: dict[str, Pod] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    servers: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def cp_address(self) -> str:
        return self.replicas[0].address

    @property
    def cp_proc(self) -> subprocess.Popen[bytes] | None:
        return self.replicas[0].proc

    # -- agents -----------------------------------------------------------------------------
    def agent(self, short: str) -> agent_pb2_grpc.AgentServiceStub:
        channel = grpc.insecure_channel(f"unix:{self.nodes[short].socket}")
        return agent_pb2_grpc.AgentServiceStub(channel)

    def start_agent(self, short: str, timeout: float = 60.0, api_listen: str = "none") -> None:
        """`api_listen`: also serve the agent API on TCP for the control plane's flow relay
        (`bulkhead observe`); by default the unix socket only."""
        node = self.nodes[short]
        with node.log.open("ab") as log:
            node.proc = subprocess.Popen(
                [str(BIN / "bulkhead-agent"), "--node", node.name, "--controlplane",
                 ",".join(r.address for r in self.replicas), "--underlay-ip",
                 node.underlay_ip, "--datapath", "bpf",
                 "--netns", node.ns, "--socket", str(node.socket), "--bpf-pin-root",
                 str(self.pin_root), "--api-listen", api_listen,
                 "--metrics-listen", f"127.0.0.1:{node.metrics_port}", "--insecure"],
                stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while True:
            if node.proc.poll() is not None:
                raise RuntimeError(f"agent {short} exited: {node.log.read_text()[-3000:]}")
            with contextlib.suppress(grpc.RpcError):
                if node.socket.exists():
                    status = self.agent(short).AgentStatus(agent_pb2.AgentStatusRequest(),
                                                           timeout=2)
                    if status.synced:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"agent {short} did not sync: {node.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def kill_agent(self, short: str, sig: int = signal.SIGKILL) -> None:
        proc = self.nodes[short].proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(timeout=15)
        self.nodes[short].proc = None

    # -- pods -------------------------------------------------------------------------------
    def make_ns(self, name: str) -> str:
        ns = f"bha{self.suffix}-{name}"
        netns.create(ns)
        self.namespaces.append(ns)
        return ns

    def add_pod(self, name: str, short: str, labels: list[str], serve: bool = False,
                ports: Sequence[tuple[str, int, str]] = ()) -> Pod:
        """A pod through its agent; `ports` are its container ports (name, number, protocol)."""
        ns = self.make_ns(name)
        dnsconf.write(ns, "default")
        made = self.agent(short).AddEndpoint(agent_pb2.AddEndpointRequest(
            netns_path=f"/var/run/netns/{ns}", name=name, namespace="default",
            labels=[*labels, "k8s:io.kubernetes.pod.namespace=default"],
            ports=[types_pb2.EndpointPort(name=n, port=p, protocol=t) for n, p, t in ports]),
            timeout=30)
        pod = Pod(name, ns, short, made.ipv4, made.identity, made.endpoint_id)
        self.pods[name] = pod
        if serve:
            self.serve(pod)
        return pod

    def serve(self, pod: Pod) -> None:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", pod.ns, sys.executable, str(DATAPATH_TESTS / "netserve.py"),
             pod.name, *SERVE_PORTS], stdout=subprocess.PIPE, text=True)
        self.servers.append(proc)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"server in {pod.name} did not start")

    def cp_endpoints(self, node: str = "") -> list[str]:
        with grpc.insecure_channel(self.cp_address) as channel:
            got = admin_pb2_grpc.AdminServiceStub(channel).ListEndpoints(
                admin_pb2.ListEndpointsRequest(node=node), timeout=10)
        return sorted(f"{e.namespace}/{e.name}" for e in got.endpoints)


def _wait_cp(address: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"control plane exited: {log.read_text()[-3000:]}")
        with contextlib.suppress(grpc.RpcError), grpc.insecure_channel(address) as channel:
            admin_pb2_grpc.AdminServiceStub(channel).Status(admin_pb2.StatusRequest(), timeout=1)
            return
        if time.monotonic() > deadline:
            raise RuntimeError("control plane did not serve")
        time.sleep(0.1)


def build(cp_args: tuple[str, ...] = (), *, etcd_endpoints: list[str] | None = None,
          replicas: int = 1) -> Cluster:
    """`cp_args`: extra control-plane flags (e.g. a short --node-ttl); `etcd_endpoints`: an
    etcd of the caller's (default: one etcd process of the cluster's own); `replicas`:
    control-plane processes, every agent given all of their addresses."""
    suffix = secrets.token_hex(3)
    tmp = Path(tempfile.mkdtemp(prefix=f"bulkhead-agent-{suffix}-"))
    c = Cluster(suffix, tmp, Path(f"/sys/fs/bpf/bulkhead-test-{suffix}"))
    try:
        _build(c, cp_args, etcd_endpoints, replicas)
    except BaseException:
        destroy(c)
        raise
    return c


def _build(c: Cluster, cp_args: tuple[str, ...], etcd_endpoints: list[str] | None,
           replicas: int) -> None:
    if etcd_endpoints is None:
        c.etcd = EtcdProcess(c.tmp / "etcd", free_port(), free_port())
        c.etcd.start()
        etcd_endpoints = [c.etcd.endpoint]
    for i in range(replicas):
        name = "controlplane" if i == 0 else f"controlplane-{i}"
        address = f"127.0.0.1:{free_port()}"
        c.replicas.append(Replica(name, address, [
            str(BIN / "bulkhead-controlplane"), "--etcd-endpoints", ",".join(etcd_endpoints),
            "--listen", address, "--cluster-name", f"agenttest-{c.suffix}",
            "--replica-id", f"{name}-{c.suffix}", "--state-dir", str(c.tmp / f"cp{i}"),
            "--insecure", *cp_args], c.tmp / f"{name}.log"))
        c.replicas[-1].start()
    octet = 16 + secrets.randbelow(200)
    for i, short in enumerate(("n1", "n2"), start=1):
        ns = c.make_ns(short)
        c.nodes[short] = Node(short, f"a{c.suffix}{short}", ns, f"192.168.{octet}.{i}",
                              c.tmp / f"agent-{short}.sock", c.tmp / f"agent-{short}.log",
                              metrics_port=free_port())
    n1, n2 = c.nodes["n1"], c.nodes["n2"]
    with IPRoute(netns=n1.ns) as ipr:
        ipr.link("add", ifname="ul", kind="veth", peer={"ifname": "ul", "net_ns_fd": n2.ns})
    for node in (n1, n2):
        with IPRoute(netns=node.ns) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            idx = ipr.link_lookup(ifname="ul")[0]
            ipr.addr("add", index=idx, address=node.underlay_ip, prefixlen=24)
            ipr.link("set", index=idx, state="up")
    for short in c.nodes:
        c.start_agent(short)


def destroy(c: Cluster) -> None:
    for proc in c.servers:
        with contextlib.suppress(Exception):
            proc.kill()
            proc.wait(timeout=5)
    for short in list(c.nodes):
        with contextlib.suppress(Exception):
            c.kill_agent(short)
        with contextlib.suppress(Exception):   # a killed agent leaves its proxy for adoption
            stop_orphan(c.nodes[short].socket.with_suffix(".proxy.sock"))
    for replica in c.replicas:
        with contextlib.suppress(Exception):
            replica.stop()
    if c.etcd is not None:
        with contextlib.suppress(Exception):
            c.etcd.stop()
    for ns in reversed(c.namespaces):
        with contextlib.suppress(Exception):
            netns.remove(ns)
        dnsconf.remove(ns)
    shutil.rmtree(c.pin_root, ignore_errors=True)
    if os.environ.get("BULKHEAD_KEEP_LOGS") != "1":
        shutil.rmtree(c.tmp, ignore_errors=True)


def probe(pod: Pod, proto: str, ip: str, port: int, timeout: float = 1.0) -> str:
    """ok / timeout / refused for one TCP or UDP attempt from a pod."""
    out = subprocess.run(
        ["ip", "netns", "exec", pod.ns, sys.executable, str(DATAPATH_TESTS / "netprobe.py"),
         proto, ip, str(port), str(timeout)],
        capture_output=True, text=True, timeout=timeout + 10)
    return out.stdout.strip() or f"error {out.stderr.strip()}"


def curl(pod: Pod, ip: str, port: int, timeout: float = 1.0) -> int:
    """curl's exit code (0 ok, 28 timed out, 7 refused)."""
    return subprocess.run(
        ["ip", "netns", "exec", pod.ns, "curl", "-s", "-o", "/dev/null", "--connect-timeout",
         str(timeout), "--max-time", str(timeout + 2), f"http://{ip}:{port}/"],
        capture_output=True, timeout=timeout + 10).returncode
