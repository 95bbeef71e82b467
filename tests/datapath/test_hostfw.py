"""The host firewall on the real kernel: a node's own traffic on its underlay interface is
checked against its host policy; the control plane's address and the tunnel stay open under a
deny-all policy; replies of allowed connections pass. Three node namespaces on one bridge;
n1 runs the datapath."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pyroute2 import IPRoute, netns

from bulkhead.reserved import reserved_labels
from cli.commands.observe import line
from nodeagent.datapath import Direction, IpcacheEntry, PolicyEntry
from nodeagent.datapath.datapath import Datapath
from nodeagent.datapath.hostfw import HostDesired
from nodeagent.datapath.layout import ObsPoint, Reason, Verdict
from nodeagent.datapath.loader import remove_pins
from nodeagent.datapath.models import Flow
from nodeagent.flowstore import FlowStore

pytestmark = pytest.mark.datapath
HERE = Path(__file__).parent
TCP = 6
SSH, WEB, CONTROL_PLANE = 2222, 8080, 9443
IPS = {"n1": "192.168.78.1", "n2": "192.168.78.2", "n3": "192.168.78.3"}
NODE_IDS = {"n1": 1, "n2": 2, "n3": 3}


@dataclass
class Lab:
    suffix: str
    ns: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    dp: Datapath | None = None

    def probe(self, src: str, dst: str, port: int) -> str:
        out = subprocess.run(["ip", "netns", "exec", self.ns[src], sys.executable,
                              str(HERE / "netprobe.py"), "tcp", IPS[dst], str(port), "1.0"],
                             capture_output=True, text=True, timeout=15)
        return out.stdout.strip() or f"error {out.stderr.strip()}"

    def serve(self, node: str, port: int) -> None:
        self.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", self.ns[node], sys.executable, "-m", "http.server",
             str(port), "--bind", IPS[node]], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))


@pytest.fixture(scope="module")
def lab(pin_root: Path) -> Iterator[Lab]:
    lab = Lab(secrets.token_hex(3))
    node_name = f"h{lab.suffix}n1"
    try:
        bridge_ns = f"bh{lab.suffix}-ul"
        netns.create(bridge_ns)
        lab.ns["ul"] = bridge_ns
        with IPRoute(netns=bridge_ns) as ipr:
            ipr.link("add", ifname="br", kind="bridge")
            ipr.link("set", index=ipr.link_lookup(ifname="br")[0], state="up")
        for name, ip in IPS.items():
            ns = f"bh{lab.suffix}-{name}"
            netns.create(ns)
            lab.ns[name] = ns
            with IPRoute(netns=bridge_ns) as ipr:
                ipr.link("add", ifname=f"p{name}", kind="veth",
                         peer={"ifname": "ul", "net_ns_fd": ns})
                port = ipr.link_lookup(ifname=f"p{name}")[0]
                ipr.link("set", index=port, master=ipr.link_lookup(ifname="br")[0], state="up")
            with IPRoute(netns=ns) as ipr:
                idx = ipr.link_lookup(ifname="ul")[0]
                ipr.addr("add", index=idx, address=ip, prefixlen=24)
                ipr.link("set", index=idx, state="up")
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        lab.dp = Datapath(node_name, netns=lab.ns["n1"], pin_root=pin_root)
        lab.dp.setup_node(IPS["n1"])
        lab.dp.setup_host_firewall(IPS["n1"])
        for port in (SSH, WEB):
            lab.serve("n1", port)
        lab.serve("n3", CONTROL_PLANE)
        lab.serve("n3", WEB)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(
                lab.probe(src, dst, port) == "ok"
                for src, dst, port in (("n2", "n1", SSH), ("n2", "n1", WEB),
                                       ("n1", "n3", CONTROL_PLANE), ("n1", "n3", WEB))):
            time.sleep(0.2)
        yield lab
    finally:
        for proc in lab.procs:
            with contextlib.suppress(Exception):
                proc.kill()
                proc.wait(timeout=5)
        if lab.dp is not None:
            with contextlib.suppress(Exception):
                lab.dp.teardown()
        remove_pins(node_name, pin_root)
        for ns in reversed(lab.ns.values()):
            with contextlib.suppress(Exception):
                netns.remove(ns)


def _desired(entries: list[tuple[int, PolicyEntry]], ingress: bool, egress: bool
             ) -> HostDesired:
    peers = {IPS[n]: (1 if n == "n1" else 6, NODE_IDS[n]) for n in IPS}
    return HostDesired(ingress, egress, tuple(entries), peers,
                       ((IPS["n3"], CONTROL_PLANE, "TCP"),))


@pytest.fixture
def host(lab: Lab) -> Iterator[Lab]:
    assert lab.dp is not None
    yield lab
    lab.dp.sync_host_policy(_desired([], False, False))


def test_ssh_port_allowed_from_one_node_only(host: Lab) -> None:
    """`fromNodes: [{matchLabels: {bastion: "true"}}]` on port 2222 resolved for n2 (node id 2)
    plus `fromEntities: [host]`: n2 reaches the port, n3 does not; nothing else is allowed."""
    assert host.dp is not None
    assert host.probe("n3", "n1", SSH) == "ok", "no host policy: open"
    host.dp.sync_host_policy(_desired([
        (NODE_IDS["n2"], PolicyEntry(Direction.INGRESS, 6, TCP, SSH, SSH)),
        (0, PolicyEntry(Direction.INGRESS, 1))], ingress=True, egress=False))
    assert host.probe("n2", "n1", SSH) == "ok"
    assert host.probe("n3", "n1", SSH) == "timeout"
    assert host.probe("n2", "n1", WEB) == "timeout"
    assert host.probe("n1", "n3", WEB) == "ok", "egress not enforced; the reply passes by ct"
    assert host.dp.host_firewall.flags() == (True, False)


def test_remote_node_entity_and_deny(host: Lab) -> None:
    assert host.dp is not None
    host.dp.sync_host_policy(_desired([
        (0, PolicyEntry(Direction.INGRESS, 6)),
        (NODE_IDS["n3"], PolicyEntry(Direction.INGRESS, 6, TCP, WEB, WEB, deny=True))],
        ingress=True, egress=False))
    assert host.probe("n2", "n1", WEB) == "ok"
    assert host.probe("n3", "n1", SSH) == "ok"
    assert host.probe("n3", "n1", WEB) == "timeout", "the deny of n3 beats remote-node"


def test_deny_all_keeps_the_control_plane_and_the_tunnel(host: Lab) -> None:
    """`ingress: [{}]`, `egress: [{}]` on every node: the control plane's address (exempt)
    stays reachable both ways, everything else is cut, and lifting the policy restores it."""
    assert host.dp is not None
    host.dp.sync_host_policy(_desired([], ingress=True, egress=True))
    assert host.probe("n1", "n3", CONTROL_PLANE) == "ok"
    assert host.probe("n1", "n3", WEB) == "timeout"
    assert host.probe("n2", "n1", SSH) == "timeout"
    exempt = host.dp.host_firewall.exempt_addresses()
    assert exempt == [(IPS["n3"], CONTROL_PLANE, TCP)]
    host.dp.sync_host_policy(_desired([], ingress=False, egress=False))
    assert host.probe("n2", "n1", SSH) == "ok"


def test_egress_to_one_node(host: Lab) -> None:
    assert host.dp is not None
    host.dp.sync_host_policy(_desired([
        (NODE_IDS["n3"], PolicyEntry(Direction.EGRESS, 6, TCP, WEB, WEB))],
        ingress=False, egress=True))
    assert host.probe("n1", "n3", WEB) == "ok"
    assert host.probe("n1", "n2", SSH) == "timeout", "n2 is not allowed (else: refused)"
    assert host.probe("n2", "n1", SSH) == "ok", "ingress not enforced; replies tracked"


def _ping(lab: Lab, src: str, dst: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", lab.ns[src], "ping", "-c", "1", "-W", "1",
                           IPS[dst]], capture_output=True, timeout=15).returncode == 0


def test_icmp_echo_by_type_from_one_node(host: Lab) -> None:
    """`icmps: [{fields: [{type: 8}]}]` with `fromNodes` n2: n2's ping gets through (its reply
    by conntrack), n3's does not."""
    assert host.dp is not None
    assert _ping(host, "n3", "n1")
    host.dp.sync_host_policy(_desired([
        (NODE_IDS["n2"], PolicyEntry(Direction.INGRESS, 6, 1, 8, 8))],
        ingress=True, egress=False))
    assert _ping(host, "n2", "n1")
    assert not _ping(host, "n3", "n1")


def test_cidr_peer_from_the_ipcache(host: Lab) -> None:
    """`fromCIDR` in a host policy: an address that is no node gets the ipcache's identity (a
    CIDR identity), as pods' peers do."""
    assert host.dp is not None
    cidr_identity = 65000
    host.dp.upsert_ipcache([IpcacheEntry(f"{IPS['n3']}/32", cidr_identity)])
    try:
        desired = _desired([(0, PolicyEntry(Direction.INGRESS, cidr_identity, TCP, SSH, SSH))],
                           ingress=True, egress=False)
        not_a_node = {ip: v for ip, v in desired.peers.items() if ip != IPS["n3"]}
        host.dp.sync_host_policy(dataclasses.replace(desired, peers=not_a_node))
        assert host.probe("n3", "n1", SSH) == "ok"
        assert host.probe("n2", "n1", SSH) == "timeout"
    finally:
        host.dp.ipcache_map.delete([f"{IPS['n3']}/32"])


def _host_flows(lab: Lab, since: int) -> list[Flow]:
    assert lab.dp is not None
    return [f for f in lab.dp.read_flows(timeout_ms=100)[since:]
            if f.obs_point is ObsPoint.HOST_FIREWALL]


def test_host_firewall_verdicts_are_flows(host: Lab) -> None:
    """A connection the host policy drops is a DROPPED flow (the reason, the node's host as
    destination), as observe shows it; one it allows is a FORWARDED policy verdict."""
    assert host.dp is not None
    before = len(host.dp.read_flows())
    host.dp.sync_host_policy(_desired([
        (NODE_IDS["n2"], PolicyEntry(Direction.INGRESS, 6, TCP, SSH, SSH))],
        ingress=True, egress=False))
    assert host.probe("n3", "n1", SSH) == "timeout"
    assert host.probe("n2", "n1", SSH) == "ok"
    flows = _host_flows(host, before)
    dropped = [f for f in flows if f.verdict is Verdict.DROPPED]
    assert dropped and all((f.saddr, f.daddr, f.dport, f.src_identity, f.dst_identity,
                            f.direction, f.reason, f.ep_id) ==
                           (IPS["n3"], IPS["n1"], SSH, 6, 1, Direction.INGRESS,
                            Reason.POLICY_DEFAULT_DENY, 0) for f in dropped), dropped
    forwarded = [f for f in flows if f.verdict is Verdict.FORWARDED]
    assert [(f.saddr, f.dport, f.policy_match) for f in forwarded] == [
        (IPS["n2"], SSH, True)], "one verdict per new connection, not per packet"
    # As the agent's flow store makes it for `bulkhead observe`.
    store = FlowStore("n1", 16, lambda i: list(reserved_labels(i)), lambda ip: None,
                      node_of=lambda ip, identity: {IPS[n]: n for n in IPS}.get(ip, ""))
    store.add(dropped[:1])
    [shown] = store.last(1, lambda flow: True)
    assert (shown.verdict, shown.drop_reason, shown.direction) == (
        "DROPPED", "Policy denied", "ingress")
    assert (shown.destination.node_name, list(shown.destination.labels),
            shown.destination.port) == ("n1", ["reserved:host"], SSH)
    assert shown.source.node_name == "n3"
    assert line(shown).endswith(
        f"{IPS['n3']}:{shown.source.port} (node n3) (ID:6) -> {IPS['n1']}:{SSH} (node n1) "
        f"(ID:1) policy-verdict:none INGRESS DROPPED (TCP Flags: SYN) Policy denied")
