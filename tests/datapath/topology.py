"""Two nodes and a few pods as network namespaces, wired with the datapath library.

Every name carries a random suffix (namespaces, pin directories), and
``destroy`` removes all of it even after a half-built setup: processes,
datapaths (endpoints, VXLAN device, pins), namespaces.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import IPRoute, netns

from nodeagent.datapath import Datapath, EndpointSpec, IpcacheEntry
from nodeagent.datapath.loader import remove_pins

HERE = Path(__file__).resolve().parent
SERVE_PORTS = ("tcp:80", "tcp:81", "udp:5353")

# identities
DEATHSTAR = 300
TIEFIGHTER = 301  # org=empire
XWING = 302  # org=alliance


@dataclass
class Pod:
    name: str
    ns: str
    node: str
    ip: str
    identity: int
    ep_id: int
    host_ifname: str

    def spec(self) -> EndpointSpec:
        return EndpointSpec(
            ep_id=self.ep_id,
            ip=self.ip,
            identity=self.identity,
            netns=self.ns,
            host_ifname=self.host_ifname,
        )


@dataclass
class Node:
    name: str  # also the pin directory name
    ns: str
    underlay_ip: str
    pod_prefix: str
    dp: Datapath | None = None


@dataclass
class Cluster:
    suffix: str
    nodes: dict[str, Node] = field(default_factory=dict)
    pods: dict[str, Pod] = field(default_factory=dict)
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    def dp(self, node: str) -> Datapath:
        dp = self.nodes[node].dp
        assert dp is not None
        return dp

    def ipcache_entries(self) -> list[IpcacheEntry]:
        """Every pod IP -> identity and its node's tunnel endpoint, plus remote nodes."""
        entries = [
            IpcacheEntry(f"{p.ip}/32", p.identity, self.nodes[p.node].underlay_ip)
            for p in self.pods.values()
        ]
        return entries

    def node_ipcache(self, node: str) -> list[IpcacheEntry]:
        """The ipcache of one node: its own pods need no tunnel, other nodes are remote-node."""
        out = []
        for e in self.ipcache_entries():
            pod = next(p for p in self.pods.values() if f"{p.ip}/32" == e.prefix)
            tunnel = None if pod.node == node else e.tunnel_endpoint
            out.append(IpcacheEntry(e.prefix, e.identity, tunnel))
        out.extend(
            IpcacheEntry(f"{n.underlay_ip}/32", 6) for n in self.nodes.values() if n.name != node
        )
        return out

    def specs(self, node: str) -> list[EndpointSpec]:
        return [p.spec() for p in self.pods.values() if p.node == node]


def _make_ns(cluster: Cluster, name: str) -> str:
    ns = f"bh{cluster.suffix}-{name}"
    netns.create(ns)
    cluster.namespaces.append(ns)
    with IPRoute(netns=ns) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
    return ns


def build(pin_root: Path) -> Cluster:
    """Two nodes (n1, n2) joined by a veth underlay; pods on both; servers started."""
    cluster = Cluster(suffix=secrets.token_hex(3))
    try:
        _build(cluster, pin_root)
    except BaseException:
        destroy(cluster, pin_root)
        raise
    return cluster


def _build(cluster: Cluster, pin_root: Path) -> None:
    s = cluster.suffix
    for i, short in enumerate(("n1", "n2"), start=1):
        ns = _make_ns(cluster, short)
        cluster.nodes[short] = Node(f"t{s}{short}", ns, f"192.168.77.{i}", f"10.{i}.0.")
    n1, n2 = cluster.nodes["n1"], cluster.nodes["n2"]
    with IPRoute(netns=n1.ns) as ipr:
        ipr.link("add", ifname="ul", kind="veth", peer={"ifname": "ul", "net_ns_fd": n2.ns})
    for node in (n1, n2):
        with IPRoute(netns=node.ns) as ipr:
            idx = ipr.link_lookup(ifname="ul")[0]
            ipr.addr("add", index=idx, address=node.underlay_ip, prefixlen=24)
            ipr.link("set", index=idx, state="up")
        node.dp = Datapath(node.name, netns=node.ns, pin_root=pin_root)
        node.dp.setup_node(node.underlay_ip)

    layout = [
        ("deathstar1", "n1", DEATHSTAR),
        ("tiefighter", "n1", TIEFIGHTER),
        ("xwing", "n1", XWING),
        ("deathstar2", "n2", DEATHSTAR),
        ("tiefighter2", "n2", TIEFIGHTER),
    ]
    for ep_id, (name, node_name, identity) in enumerate(layout, start=10):
        node = cluster.nodes[node_name]
        pod = Pod(
            name=name,
            ns=_make_ns(cluster, name),
            node=node_name,
            ip=f"{node.pod_prefix}{ep_id}",
            identity=identity,
            ep_id=ep_id,
            host_ifname=f"lxc{ep_id}",
        )
        cluster.pods[name] = pod
        cluster.dp(node_name).add_endpoint(pod.spec())
    for short in cluster.nodes:
        cluster.dp(short).sync_ipcache(cluster.node_ipcache(short))
    for pod in cluster.pods.values():
        if pod.name.startswith("deathstar"):
            start_server(cluster, pod)


def start_server(cluster: Cluster, pod: Pod) -> None:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", pod.ns, sys.executable, str(HERE / "netserve.py"), pod.name,
         *SERVE_PORTS],
        stdout=subprocess.PIPE,
        text=True,
    )
    cluster.procs.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError(f"server in {pod.name} did not start: {line!r}")


def destroy(cluster: Cluster, pin_root: Path) -> None:
    for proc in cluster.procs:
        with contextlib.suppress(Exception):
            proc.kill()
            proc.wait(timeout=5)
    for node in cluster.nodes.values():
        if node.dp is not None:
            with contextlib.suppress(Exception):
                node.dp.teardown()
            node.dp = None
        remove_pins(node.name, pin_root)
    for ns in reversed(cluster.namespaces):
        with contextlib.suppress(Exception):
            netns.remove(ns)


def probe(pod: Pod, proto: str, ip: str, port: int, timeout: float = 1.0,
          source_port: int = 0) -> str:
    """ok / timeout / refused for one TCP or UDP attempt from a pod (from `source_port`
    when given)."""
    out = subprocess.run(
        ["ip", "netns", "exec", pod.ns, sys.executable, str(HERE / "netprobe.py"), proto, ip,
         str(port), str(timeout), *([str(source_port)] if source_port else [])],
        capture_output=True,
        text=True,
        timeout=timeout + 10,
    )
    return out.stdout.strip() or f"error {out.stderr.strip()}"


def curl(pod: Pod, ip: str, port: int, timeout: float = 1.0) -> int:
    """curl's exit code (0 ok, 28 timed out, 7 refused)."""
    return subprocess.run(
        ["ip", "netns", "exec", pod.ns, "curl", "-s", "-o", "/dev/null", "--connect-timeout",
         str(timeout), "--max-time", str(timeout + 2), f"http://{ip}:{port}/"],
        capture_output=True,
        timeout=timeout + 10,
    ).returncode


def ping(pod: Pod, ip: str) -> bool:
    return (
        subprocess.run(
            ["ip", "netns", "exec", pod.ns, "ping", "-c", "1", "-W", "1", ip],
            capture_output=True,
            timeout=10,
        ).returncode
        == 0
    )


def _names(pod: Pod, ip: str, port: int, count: int, timeout: float, *mode: str
           ) -> dict[str, int]:
    """Runs netmany.py in the pod: how many each server name answered ("failed": none)."""
    out = subprocess.run(
        ["ip", "netns", "exec", pod.ns, sys.executable, str(HERE / "netmany.py"), ip, str(port),
         str(count), str(timeout), *mode],
        capture_output=True,
        text=True,
        timeout=count * (timeout + 1) + 10,
    )
    if out.returncode != 0:
        raise RuntimeError(f"netmany failed: {out.stderr.strip()}")
    result: dict[str, int] = json.loads(out.stdout)
    return result


def many(pod: Pod, ip: str, port: int, count: int, timeout: float = 2.0) -> dict[str, int]:
    """``count`` new TCP connections from a pod: how many each server name answered
    ("failed" for any connection that did not get a whole answer)."""
    return _names(pod, ip, port, count, timeout)


def udp_names(pod: Pod, ip: str, port: int, count: int, source_port: int,
              timeout: float = 2.0) -> dict[str, int]:
    """``count`` UDP requests from one socket bound to ``source_port`` (one 5-tuple): how
    many each server name answered ("failed" for no answer)."""
    return _names(pod, ip, port, count, timeout, f"udp:{source_port}")
