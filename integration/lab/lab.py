"""A lab: nodes as network namespaces joined by an underlay bridge, the control plane with its
embedded etcd, one agent per node (run in the host namespace, working in the node's), and pods
added through the agents' local API. `--datapath=none` builds the same topology with plain
kernel routing over VXLAN and no Bulkhead programs (the benchmarks' baseline).
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc

from bulkhead.defaults import SERVER_FILE
from bulkhead.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc, types_pb2
from controlplane.store.embedded import free_port
from nodeagent.pods.labels import pod_labels

from . import credentials, dnsconf, multicluster, netns, processes, world
from .state import LabState, NodeState, PodState, labs_dir

UNDERLAY = ipaddress.IPv4Network("192.0.2.0/24")  # TEST-NET-1, only inside lab namespaces
PIN_BASE = Path("/sys/fs/bpf/bulkhead")


class LabError(RuntimeError):
    pass


def _bin(name: str) -> str:
    found = Path(sys.executable).parent / name
    return str(found) if found.exists() else (shutil.which(name) or name)


class Lab:
    def __init__(self, name: str = "default", say: Callable[[str], None] | None = None) -> None:
        self.name = name
        self.say = say or (lambda msg: print(f"==> {msg}", file=sys.stderr, flush=True))

    # -- lifecycle -----------------------------------------------------------------------

    def state(self) -> LabState:
        state = LabState.load(self.name)
        if state is None:
            raise LabError(f"lab {self.name!r} is not up; run `bulkhead-lab up`")
        return state

    def up(self, nodes: int, datapath: str = "bpf", clusters: int = 1,
           with_world: bool = False) -> LabState:
        if not 1 <= nodes <= 50:
            raise LabError("--nodes must be 1-50")
        if not 1 <= clusters <= multicluster.MAX_CLUSTERS:
            raise LabError(f"--clusters must be 1-{multicluster.MAX_CLUSTERS}")
        if clusters > 1 and datapath != "bpf":
            raise LabError("--clusters needs --datapath=bpf")
        state = LabState.load(self.name)
        if state is not None and state.datapath != datapath:
            raise LabError(f"lab {self.name!r} is up with --datapath={state.datapath}; "
                           f"run `bulkhead-lab down` first")
        if state is not None and len(state.clusters or {"": 0}) != clusters:
            raise LabError(f"lab {self.name!r} is up with --clusters="
                           f"{len(state.clusters) or 1}; run `bulkhead-lab down` first")
        if state is None:
            prefix = f"bhl-{self.name}-"
            state = LabState(self.name, datapath, prefix, f"{prefix}ul",
                             pin_root=str(PIN_BASE / f"lab-{self.name}"))
        state.save()
        self.say(f"underlay {UNDERLAY} in namespace {state.underlay_netns}")
        netns.build_underlay(state.underlay_netns, f"{UNDERLAY[254]}/24")
        if clusters > 1:
            multicluster.up(self, state, nodes, clusters)
            self.say(f"lab {self.name!r} is up: {clusters} clusters of {nodes} nodes, "
                     "connected both ways")
            return state
        for i in range(1, nodes + 1):
            name = f"n{i}"
            node = state.nodes.get(name) or NodeState(name, f"{state.prefix}{name}",
                                                      str(UNDERLAY[i]))
            state.nodes[name] = node
            self.attach(state, node, i)
        if with_world:
            self._world_up(state)
        if datapath == "none":
            self._plain_routing(state)
        else:
            self._start_controlplane(state)
            for node in state.nodes.values():
                self._start_agent(state, node)
        if state.world_pids:
            world.routes(state, self._pod_cidrs(state))
        state.save()
        self.say(f"lab {self.name!r} is up: {len(state.nodes)} nodes, datapath {datapath}")
        return state

    def underlay_ip(self, index: int) -> str:
        return str(UNDERLAY[index])

    def attach(self, state: LabState, node: NodeState, index: int) -> None:
        """The node's namespace on underlay bridge port `p<index>`."""
        self.say(f"node {node.name}{f' of {node.cluster}' if node.cluster else ''}: "
                 f"namespace {node.netns}, underlay {node.underlay_ip}")
        netns.attach_node(state.underlay_netns, node.netns, f"p{index}",
                          f"{node.underlay_ip}/24")
        state.save()

    def down(self) -> None:
        state = LabState.load(self.name)
        prefix = state.prefix if state else f"bhl-{self.name}-"
        if state is not None:
            for pid in state.world_pids:
                processes.stop(pid)
            for pod in state.pods.values():
                processes.stop(pod.server_pid)
            for node in state.nodes.values():
                if node.agent_pid:
                    self.say(f"stopping agent {node.name}")
                processes.stop(node.agent_pid)
            if state.controlplane_pid:
                self.say("stopping control plane")
            processes.stop(state.controlplane_pid)
            multicluster.stop(self, state)
            credentials.unpublish(state)
        for ns in netns.namespaces(prefix):
            self.say(f"removing namespace {ns}")
            for pid in netns.pids_in(ns):  # e.g. the servers of connectivity-test pods
                processes.stop(pid)
            netns.delete_netns(ns)
        dnsconf.remove_prefix(prefix)
        pin_root = Path(state.pin_root) if state else PIN_BASE / f"lab-{self.name}"
        if pin_root.exists():
            self.say(f"removing pinned maps {pin_root}")
            shutil.rmtree(pin_root, ignore_errors=True)
        shutil.rmtree(labs_dir() / self.name, ignore_errors=True)
        self.say(f"lab {self.name!r} is down")

    # -- control plane and agents --------------------------------------------------------

    def _start_controlplane(self, state: LabState) -> None:
        if state.controlplane_pid and processes.alive(state.controlplane_pid):
            return
        # A restarted control plane keeps its address, so clients and agents find it again.
        port = int(state.controlplane.rsplit(":", 1)[1]) if state.controlplane else free_port()
        cp_dir = credentials.controlplane_dir(state)
        addr_file = cp_dir / SERVER_FILE
        addr_file.unlink(missing_ok=True)
        self.say(f"control plane with embedded etcd on 127.0.0.1:{port}")
        state.controlplane_pid = processes.start(
            [_bin("bulkhead-controlplane"), "--state-dir", str(cp_dir),
             "--listen", f"127.0.0.1:{port}", "--replica-id", f"lab-{self.name}"],
            state.directory / "controlplane.log")
        state.controlplane = f"127.0.0.1:{port}"
        state.save()
        self._wait(lambda: addr_file.exists(), 30, "the control plane to serve",
                   state.directory / "controlplane.log", state.controlplane_pid)
        credentials.publish(state)

    def _start_agent(self, state: LabState, node: NodeState) -> None:
        if node.agent_pid and processes.alive(node.agent_pid):
            return
        label = f"{node.cluster}-{node.name}" if node.cluster else node.name
        node.socket = str(state.directory / f"{label}.sock")
        Path(node.socket).unlink(missing_ok=True)
        self.say(f"agent for {label}")
        log = state.directory / f"agent-{label}.log"
        node.metrics = f"127.0.0.1:{free_port()}"
        upstream = ["--dns-upstream", world.DNS_IP] if state.world_pids else []
        node.agent_pid = processes.start(
            [_bin("bulkhead-agent"), "--node", node.name,
             "--controlplane", multicluster.server_of(state, node),
             "--underlay-ip", node.underlay_ip, "--datapath", "bpf", "--netns", node.netns,
             "--socket", node.socket, "--bpf-pin-root", multicluster.pin_root_of(state, node),
             "--metrics-listen", node.metrics, *upstream, *credentials.agent_flags(state, node)],
            log)
        state.save()
        self._wait(lambda: self._agent_connected(node), 90, f"agent {node.name} to connect",
                   log, node.agent_pid)
        credentials.joined(state, node)
        credentials.publish(state)

    def _agent_connected(self, node: NodeState) -> bool:
        if not Path(node.socket).exists():
            return False
        try:
            status = self.agent(node).AgentStatus(agent_pb2.AgentStatusRequest(), timeout=2)
        except grpc.RpcError:
            return False
        return bool(status.connected)

    def _wait(self, ready: Callable[[], bool], timeout: float, what: str, log: Path,
              pid: int) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if not processes.alive(pid):
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise LabError(f"gave up waiting for {what}: the process exited; {log}:\n{tail}")
            if time.monotonic() > deadline:
                raise LabError(f"gave up waiting for {what} after {timeout:.0f} s; see {log}")
            time.sleep(0.2)

    def agent(self, node: NodeState) -> agent_pb2_grpc.AgentServiceStub:
        return agent_pb2_grpc.AgentServiceStub(grpc.insecure_channel(f"unix:{node.socket}"))

    # -- the world (FQDN policies: integration/lab/world.py) ------------------------------

    def _world_up(self, state: LabState) -> None:
        if state.world_pids and all(processes.alive(p) for p in state.world_pids):
            return
        for pid in state.world_pids:
            processes.stop(pid)
        self.say(f"world: DNS {world.DNS_IP}, " + ", ".join(
            f"{name} {ip}" for name, ip in world.NAMES.items()))
        state.world_pids = world.up(state)
        state.save()

    def _pod_cidrs(self, state: LabState) -> dict[str, str]:
        if state.datapath == "none":
            return {n.name: n.pod_cidr for n in state.nodes.values()}
        with credentials.channel(state) as channel:
            nodes = admin_pb2_grpc.AdminServiceStub(channel).ListNodes(
                admin_pb2.ListNodesRequest(), timeout=10).nodes
        return {n.name: n.pod_cidr for n in nodes}

    def restart_agent(self, node_name: str) -> None:
        """Stops a node's agent and starts it again (its pinned maps and state files stay)."""
        state = self.state()
        node = state.nodes[node_name]
        processes.stop(node.agent_pid)
        node.agent_pid = 0
        self._start_agent(state, node)
        state.save()

    # -- plain routing (datapath none) ---------------------------------------------------

    def _plain_routing(self, state: LabState) -> None:
        nodes = list(state.nodes.values())
        for i, node in enumerate(nodes, start=1):
            node.pod_cidr = f"10.200.{i}.0/24"
            peers = [n.underlay_ip for n in nodes if n is not node]
            netns.plain_vxlan(node.netns, node.underlay_ip, f"10.255.255.{i}", peers)
        for node in nodes:
            for j, other in enumerate(nodes, start=1):
                if other is not node:
                    netns.plain_route(node.netns, other.pod_cidr, f"10.255.255.{j}")

    # -- pods ----------------------------------------------------------------------------

    def pod_create(self, name: str, node_name: str, namespace: str, labels: Sequence[str],
                   serve: Sequence[str] = (), app: str = "name", owner: str = "",
                   ports: Sequence[tuple[str, int, str]] = (), cluster: str = "") -> PodState:
        """A pod on `node_name` (of `cluster` in a lab of several clusters; c1 by default);
        `ports` are its container ports (name, number, protocol), which its endpoint carries
        for Services' named targetPorts."""
        state = self.state()
        if cluster and cluster not in state.clusters:
            raise LabError(f"no cluster {cluster!r} in lab {self.name!r}"
                           + (f" (clusters: {', '.join(state.clusters)})" if state.clusters
                              else " (it has one cluster: `up --clusters N` makes more)"))
        if state.clusters and "/" not in node_name:
            node_name = multicluster.node_key(cluster or "c1", node_name)
        if node_name not in state.nodes:
            raise LabError(f"no node {node_name!r} in lab {self.name!r} "
                           f"(nodes: {', '.join(state.nodes)})")
        if name in state.pods:
            raise LabError(f"pod {name!r} already exists")
        node = state.nodes[node_name]
        pod = PodState(name, namespace, node_name, f"{state.prefix}pod-{name}",
                       labels=pod_labels(labels, namespace), serve=list(serve), owner=owner)
        netns.add_netns(pod.netns)
        dnsconf.write(pod.netns, namespace)
        try:
            if state.datapath == "none":
                pod.ip = self._plain_ip(state, node)
                netns.plain_pod(node.netns, pod.netns, f"lxc{zlib.crc32(name.encode()):08x}",
                                pod.ip)
            else:
                made = self.agent(node).AddEndpoint(agent_pb2.AddEndpointRequest(
                    netns_path=f"/var/run/netns/{pod.netns}", name=name, namespace=namespace,
                    labels=pod.labels, ports=[types_pb2.EndpointPort(name=n, port=p, protocol=t)
                                              for n, p, t in ports]), timeout=60)
                pod.ip, pod.identity = made.ipv4, made.identity
            if serve:
                pod.server_pid = processes.start_ready(
                    ["ip", "netns", "exec", pod.netns, sys.executable, "-m",
                     "nodeagent.pods.server", name, "--ports", ",".join(serve),
                     "--app", app], state.directory / f"pod-{name}.log")
        except BaseException:
            netns.delete_netns(pod.netns)
            dnsconf.remove(pod.netns)
            raise
        state.pods[name] = pod
        state.save()
        return pod

    def pod_delete(self, name: str) -> None:
        state = self.state()
        pod = state.pods.get(name)
        if pod is None:
            raise LabError(f"no pod {name!r} in lab {self.name!r}")
        processes.stop(pod.server_pid)
        if state.datapath != "none":
            with contextlib.suppress(grpc.RpcError):
                self.agent(state.nodes[pod.node]).DeleteEndpoint(
                    agent_pb2.DeleteAgentEndpointRequest(namespace=pod.namespace, name=name),
                    timeout=60)
        netns.delete_netns(pod.netns)
        dnsconf.remove(pod.netns)
        del state.pods[name]
        state.save()

    def _plain_ip(self, state: LabState, node: NodeState) -> str:
        used = {p.ip for p in state.pods.values()}
        for host in list(ipaddress.IPv4Network(node.pod_cidr).hosts())[9:]:
            if str(host) not in used:
                return str(host)
        raise LabError(f"node {node.name} has no free pod address")

    def exec(self, name: str, argv: Sequence[str]) -> int:
        pod = self.state().pods.get(name)
        if pod is None:
            raise LabError(f"no pod {name!r} in lab {self.name!r}")
        return subprocess.run(["ip", "netns", "exec", pod.netns, *argv]).returncode
