"""Truth table: (policies, source, destination, port/protocol) -> verdict.

Every row is checked twice: by `trace` (rules evaluated against label sets) and by the
datapath's lookup over the entries the repository resolved for real identities; both must give
the expected verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from controlplane.policy import TraceVerdict

from .helpers import cidr, pod, reserved, resolved_verdicts, traced

ICMP, TCP, UDP, SCTP = 1, 6, 17, 132
ALLOWED, DENIED = TraceVerdict.ALLOWED, TraceVerdict.DENIED

HEAD = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n"
CLUSTERWIDE = "apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\n"


def cnp(name: str, spec: str, namespace: str = "default") -> str:
    return f"{HEAD}metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}\n---\n"


def ccnp(name: str, spec: str) -> str:
    return f"{CLUSTERWIDE}metadata: {{name: {name}}}\nspec:\n{spec}\n---\n"


SEED = cnp("rule1", """
  endpointSelector: {matchLabels: {org: empire, class: deathstar}}
  ingress:
  - fromEndpoints: [{matchLabels: {org: empire}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
""")
DEATHSTAR = pod(org="empire", **{"class": "deathstar"})
TIEFIGHTER = pod(org="empire", **{"class": "tiefighter"})
XWING = pod(org="alliance", **{"class": "xwing"})
WEB = pod(app="web")
DB = pod(app="db")
CACHE = pod(app="cache")

DENY_ALL_INGRESS = cnp("deny-all", "  endpointSelector: {matchLabels: {app: db}}\n  ingress: [{}]")
DENY_ALL_EGRESS = cnp("deny-all", "  endpointSelector: {matchLabels: {app: web}}\n  egress: [{}]")
EGRESS_DNS = cnp("dns", """
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toPorts: [{ports: [{port: "53", protocol: UDP}]}]
  - toEndpoints: [{matchLabels: {app: db}}]
""")
FROM_MONITORING = cnp("from-monitoring", """
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: monitoring, app: scraper}}]
""")
FROM_FRONTEND_NS = cnp("from-frontend", """
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: frontend}}]
""")
FROM_FRONTEND_CW = ccnp("from-frontend", """
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: frontend}}]
""")
IN_PROD = cnp("in-prod", "  endpointSelector: {matchLabels: {app: db}}\n  ingress: [{}]", "prod")
PORT_RANGE = cnp("range", """
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - toPorts: [{ports: [{port: 8000, endPort: 8080, protocol: TCP}]}]
""")
ANY_PROTO = cnp("any-proto", """
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - toPorts: [{ports: [{port: "53"}]}]
""")
L3_DENY_L4_ALLOW = cnp("l3deny", """
  endpointSelector: {matchLabels: {class: deathstar}}
  ingress:
  - toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {org: alliance}}]
""")
L4_DENY_L3_ALLOW = cnp("l4deny", """
  endpointSelector: {matchLabels: {class: deathstar}}
  ingress:
  - fromEndpoints: [{matchLabels: {org: empire}}]
  ingressDeny:
  - toPorts: [{ports: [{port: "22", protocol: TCP}]}]
""")
EGRESS_DENY_WORLD = ccnp("no-world", """
  endpointSelector: {}
  egress:
  - toEntities: [all]
  egressDeny:
  - toEntities: [world]
""")
UNION = SEED + cnp("alliance-https", """
  endpointSelector: {matchLabels: {class: deathstar}}
  ingress:
  - fromEndpoints: [{matchLabels: {org: alliance}}]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
""")
SELECT_ALL_CW = ccnp("all-pods", """
  endpointSelector: {}
  ingress:
  - fromEndpoints: [{matchLabels: {org: empire}}]
""")
FROM_ALL_NS = cnp("same-ns", "  endpointSelector: {matchLabels: {app: db}}\n"
                  "  ingress:\n  - fromEndpoints: [{}]")
FROM_ALL_CW = ccnp("everyone", "  endpointSelector: {matchLabels: {app: db}}\n"
                   "  ingress:\n  - fromEndpoints: [{}]")
ICMP_ECHO_FROM_EMPIRE = cnp("icmp-echo", """
  endpointSelector: {matchLabels: {class: deathstar}}
  ingress:
  - fromEndpoints: [{matchLabels: {org: empire}}]
    icmps: [{fields: [{type: EchoRequest}]}]
""")
ICMP_REPLY_ONLY = cnp("icmp-reply", """
  endpointSelector: {matchLabels: {class: deathstar}}
  ingress:
  - icmps: [{fields: [{type: 0}]}]
""")
ICMP_DENY_ECHO = cnp("icmp-deny", """
  endpointSelector: {matchLabels: {class: deathstar}}
  ingress:
  - fromEndpoints: [{}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {org: alliance}}]
    icmps: [{fields: [{type: 8, family: IPv4}]}]
""")
ANY_PROTO_ALL = cnp("l3-only", """
  endpointSelector: {matchLabels: {class: deathstar}}
  ingress:
  - fromEndpoints: [{matchLabels: {class: tiefighter}}]
""")
ICMP_EGRESS = cnp("icmp-egress", """
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toEndpoints: [{matchLabels: {app: db}}]
    icmps: [{fields: [{type: Echo}, {type: TimestampReply}]}]
""")


def expr(op: str, key: str, values: str = "") -> str:
    vals = f", values: [{values}]" if values else ""
    return cnp("expr", f"""
  endpointSelector: {{matchLabels: {{app: db}}}}
  ingress:
  - fromEndpoints: [{{matchExpressions: [{{key: {key}, operator: {op}{vals}}}]}}]
""")


def entities(*names: str, direction: str = "ingress") -> str:
    peer = "fromEntities" if direction == "ingress" else "toEntities"
    return ccnp("entities", f"""
  endpointSelector: {{matchLabels: {{app: db}}}}
  {direction}:
  - {peer}: [{', '.join(names)}]
""")


CIDR_EXCEPT = cnp("cidr", """
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toCIDRSet: [{cidr: 10.0.0.0/8, except: [10.96.0.0/12]}]
""")
CIDR_ALL = cnp("cidr-all", """
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toCIDR: [0.0.0.0/0]
""")
FROM_CIDR = cnp("from-cidr", """
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromCIDR: [192.168.0.0/16]
""")
SOURCE_PREFIXES = cnp("sources", """
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{matchLabels: {"any:org": empire}}]
  - fromEndpoints: [{matchLabels: {"reserved:host": ""}}]
""")
K8S_SOURCE_ONLY = ccnp("k8s-only", """
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{matchLabels: {"k8s:org": empire}}]
""")


@dataclass(frozen=True)
class Row:
    name: str
    policies: str
    src: frozenset[str]
    dst: frozenset[str]
    port: int
    protocol: int
    expected: TraceVerdict


ROWS = [
    Row("no policy allows everything", "", XWING, DEATHSTAR, 80, TCP, ALLOWED),
    Row("no policy, any protocol", "", XWING, DEATHSTAR, 9999, SCTP, ALLOWED),
    # icmps: the ICMP type where the port would be
    Row("icmps: echo from empire", ICMP_ECHO_FROM_EMPIRE, TIEFIGHTER, DEATHSTAR, 8, ICMP,
        ALLOWED),
    Row("icmps: other type", ICMP_ECHO_FROM_EMPIRE, TIEFIGHTER, DEATHSTAR, 13, ICMP, DENIED),
    Row("icmps: other peer", ICMP_ECHO_FROM_EMPIRE, XWING, DEATHSTAR, 8, ICMP, DENIED),
    Row("icmps: not a TCP port", ICMP_ECHO_FROM_EMPIRE, TIEFIGHTER, DEATHSTAR, 8, TCP, DENIED),
    Row("icmps: type 0 is EchoReply only", ICMP_REPLY_ONLY, XWING, DEATHSTAR, 0, ICMP,
        ALLOWED),
    Row("icmps: type 0 is not every type", ICMP_REPLY_ONLY, XWING, DEATHSTAR, 8, ICMP, DENIED),
    Row("icmps: ports any protocol cover ICMP", SEED + ANY_PROTO_ALL, TIEFIGHTER, DEATHSTAR, 8,
        ICMP, ALLOWED),
    Row("icmps deny: alliance echo", ICMP_DENY_ECHO, XWING, DEATHSTAR, 8, ICMP, DENIED),
    Row("icmps deny: other type passes", ICMP_DENY_ECHO, XWING, DEATHSTAR, 13, ICMP, ALLOWED),
    Row("icmps deny: TCP passes", ICMP_DENY_ECHO, XWING, DEATHSTAR, 8, TCP, ALLOWED),
    Row("icmps deny: other peer", ICMP_DENY_ECHO, TIEFIGHTER, DEATHSTAR, 8, ICMP, ALLOWED),
    Row("icmps egress: echo", ICMP_EGRESS, WEB, DB, 8, ICMP, ALLOWED),
    Row("icmps egress: timestamp reply", ICMP_EGRESS, WEB, DB, 14, ICMP, ALLOWED),
    Row("icmps egress: other peer", ICMP_EGRESS, WEB, CACHE, 8, ICMP, DENIED),
    # the seed scenario
    Row("seed: tiefighter 80/TCP", SEED, TIEFIGHTER, DEATHSTAR, 80, TCP, ALLOWED),
    Row("seed: tiefighter 81/TCP", SEED, TIEFIGHTER, DEATHSTAR, 81, TCP, DENIED),
    Row("seed: xwing 80/TCP", SEED, XWING, DEATHSTAR, 80, TCP, DENIED),
    Row("seed: tiefighter 80/UDP", SEED, TIEFIGHTER, DEATHSTAR, 80, UDP, DENIED),
    Row("seed: unselected destination", SEED, DEATHSTAR, XWING, 80, TCP, ALLOWED),
    Row("seed: deathstar egress unrestricted", SEED, DEATHSTAR, TIEFIGHTER, 22, TCP, ALLOWED),
    # default deny on selection
    Row("ingress [{}] denies all", DENY_ALL_INGRESS, WEB, DB, 5432, TCP, DENIED),
    Row("ingress [{}] leaves others", DENY_ALL_INGRESS, DB, WEB, 80, TCP, ALLOWED),
    Row("egress [{}] denies all", DENY_ALL_EGRESS, WEB, DB, 5432, TCP, DENIED),
    Row("egress [{}] leaves ingress", DENY_ALL_EGRESS, DB, WEB, 80, TCP, ALLOWED),
    # egress restriction
    Row("egress ports without peers: dns", EGRESS_DNS, WEB, CACHE, 53, UDP, ALLOWED),
    Row("egress: other port denied", EGRESS_DNS, WEB, CACHE, 80, TCP, DENIED),
    Row("egress peers without ports", EGRESS_DNS, WEB, DB, 5432, TCP, ALLOWED),
    Row("egress to world denied", EGRESS_DNS, WEB, reserved("world"), 443, TCP, DENIED),
    # namespaces
    Row("by namespace label", FROM_MONITORING, pod("monitoring", app="scraper"), DB, 9090, TCP,
        ALLOWED),
    Row("by namespace: other namespace", FROM_MONITORING, pod(app="scraper"), DB, 9090, TCP,
        DENIED),
    Row("namespaced: peer in own namespace", FROM_FRONTEND_NS, pod(app="frontend"), DB, 5432,
        TCP, ALLOWED),
    Row("namespaced: peer namespace injected", FROM_FRONTEND_NS, pod("other", app="frontend"),
        DB, 5432, TCP, DENIED),
    Row("clusterwide: no namespace injected", FROM_FRONTEND_CW, pod("other", app="frontend"),
        DB, 5432, TCP, ALLOWED),
    Row("namespaced: subject only in own namespace", IN_PROD, WEB, DB, 5432, TCP, ALLOWED),
    Row("namespaced: subject in own namespace", IN_PROD, WEB, pod("prod", app="db"), 5432, TCP,
        DENIED),
    # ports
    Row("port range: low end", PORT_RANGE, WEB, DB, 8000, TCP, ALLOWED),
    Row("port range: high end", PORT_RANGE, WEB, DB, 8080, TCP, ALLOWED),
    Row("port range: above", PORT_RANGE, WEB, DB, 8081, TCP, DENIED),
    Row("port range: below", PORT_RANGE, WEB, DB, 7999, TCP, DENIED),
    Row("port range: other protocol", PORT_RANGE, WEB, DB, 8000, UDP, DENIED),
    Row("protocol ANY by default: UDP", ANY_PROTO, WEB, DB, 53, UDP, ALLOWED),
    Row("protocol ANY by default: SCTP", ANY_PROTO, WEB, DB, 53, SCTP, ALLOWED),
    # deny beats allow
    Row("L3 deny beats L4 allow", L3_DENY_L4_ALLOW, XWING, DEATHSTAR, 80, TCP, DENIED),
    Row("L3 deny spares others", L3_DENY_L4_ALLOW, TIEFIGHTER, DEATHSTAR, 80, TCP, ALLOWED),
    Row("L4 deny beats L3 allow", L4_DENY_L3_ALLOW, TIEFIGHTER, DEATHSTAR, 22, TCP, DENIED),
    Row("L4 deny spares other ports", L4_DENY_L3_ALLOW, TIEFIGHTER, DEATHSTAR, 80, TCP,
        ALLOWED),
    Row("egress deny world beats allow all", EGRESS_DENY_WORLD, WEB, reserved("world"), 443,
        TCP, DENIED),
    Row("egress deny world spares pods", EGRESS_DENY_WORLD, WEB, DB, 5432, TCP, ALLOWED),
    Row("egress deny world covers CIDR identities", EGRESS_DENY_WORLD, WEB, cidr("8.8.8.8/32"),
        53, UDP, DENIED),
    # union
    Row("union: second policy allows", UNION, XWING, DEATHSTAR, 443, TCP, ALLOWED),
    Row("union: first policy still allows", UNION, TIEFIGHTER, DEATHSTAR, 80, TCP, ALLOWED),
    Row("union: neither allows", UNION, XWING, DEATHSTAR, 80, TCP, DENIED),
    # {} selectors
    Row("{} endpointSelector selects every pod", SELECT_ALL_CW, XWING, WEB, 80, TCP, DENIED),
    Row("{} endpointSelector allows listed peers", SELECT_ALL_CW, TIEFIGHTER, WEB, 80, TCP,
        ALLOWED),
    Row("{} peer in namespaced policy: own namespace", FROM_ALL_NS, WEB, DB, 5432, TCP,
        ALLOWED),
    Row("{} peer in namespaced policy: other namespace", FROM_ALL_NS, pod("other", app="web"),
        DB, 5432, TCP, DENIED),
    Row("{} peer in clusterwide policy: anyone", FROM_ALL_CW, reserved("world"), DB, 5432, TCP,
        ALLOWED),
    # matchExpressions
    Row("In: listed", expr("In", "class", "tiefighter, interceptor"),
        pod(**{"class": "interceptor"}), DB, 1, TCP, ALLOWED),
    Row("In: not listed", expr("In", "class", "tiefighter"), XWING, DB, 1, TCP, DENIED),
    Row("In: absent key", expr("In", "class", "tiefighter"), WEB, DB, 1, TCP, DENIED),
    Row("NotIn: other value", expr("NotIn", "class", "xwing"), TIEFIGHTER, DB, 1, TCP, ALLOWED),
    Row("NotIn: listed value", expr("NotIn", "class", "xwing"), XWING, DB, 1, TCP, DENIED),
    Row("NotIn: absent key", expr("NotIn", "class", "xwing"), WEB, DB, 1, TCP, ALLOWED),
    Row("Exists: present", expr("Exists", "org"), XWING, DB, 1, TCP, ALLOWED),
    Row("Exists: absent", expr("Exists", "org"), WEB, DB, 1, TCP, DENIED),
    Row("DoesNotExist: absent", expr("DoesNotExist", "quarantine"), WEB, DB, 1, TCP, ALLOWED),
    Row("DoesNotExist: present", expr("DoesNotExist", "quarantine"),
        pod(app="web", quarantine="yes"), DB, 1, TCP, DENIED),
    Row("operator names are case-insensitive", expr("notin", "class", "xwing"), XWING, DB, 1,
        TCP, DENIED),
    # entities
    Row("entity host", entities("host"), reserved("host"), DB, 1, TCP, ALLOWED),
    Row("entity host excludes pods", entities("host"), WEB, DB, 1, TCP, DENIED),
    Row("entity remote-node", entities("remote-node"), reserved("remote-node"), DB, 1, TCP,
        ALLOWED),
    Row("entity world", entities("world"), reserved("world"), DB, 1, TCP, ALLOWED),
    Row("entity world covers CIDR identities", entities("world"), cidr("1.2.3.4/32"), DB, 1, TCP,
        ALLOWED),
    Row("entity world excludes host", entities("world"), reserved("host"), DB, 1, TCP, DENIED),
    Row("entity cluster: pod of any namespace", entities("cluster"), pod("other", app="x"), DB,
        1, TCP, ALLOWED),
    Row("entity cluster: health", entities("cluster"), reserved("health"), DB, 1, TCP, ALLOWED),
    Row("entity cluster excludes world", entities("cluster"), reserved("world"), DB, 1, TCP,
        DENIED),
    Row("entity all", entities("all"), reserved("world"), DB, 1, TCP, ALLOWED),
    Row("entity kube-apiserver (egress)", entities("kube-apiserver", direction="egress"), DB,
        reserved("kube-apiserver"), 443, TCP, ALLOWED),
    Row("entity kube-apiserver excludes host (egress)",
        entities("kube-apiserver", direction="egress"), DB, reserved("host"), 443, TCP, DENIED),
    Row("entity health, init, unmanaged", entities("health", "init", "unmanaged"),
        reserved("unmanaged"), DB, 1, TCP, ALLOWED),
    # CIDR
    Row("CIDR set: inside", CIDR_EXCEPT, WEB, cidr("10.1.2.3/32"), 443, TCP, ALLOWED),
    Row("CIDR set: except", CIDR_EXCEPT, WEB, cidr("10.96.0.10/32"), 443, TCP, DENIED),
    Row("CIDR set: except prefix itself", CIDR_EXCEPT, WEB, cidr("10.96.0.0/12"), 443, TCP,
        DENIED),
    Row("CIDR set: outside", CIDR_EXCEPT, WEB, cidr("192.168.1.1/32"), 443, TCP, DENIED),
    Row("CIDR set: world not covered", CIDR_EXCEPT, WEB, reserved("world"), 443, TCP, DENIED),
    Row("CIDR 0.0.0.0/0 covers world", CIDR_ALL, WEB, reserved("world"), 443, TCP, ALLOWED),
    Row("CIDR 0.0.0.0/0 excludes pods", CIDR_ALL, WEB, DB, 443, TCP, DENIED),
    Row("fromCIDR inside", FROM_CIDR, cidr("192.168.3.0/24"), DB, 1, TCP, ALLOWED),
    Row("fromCIDR outside", FROM_CIDR, cidr("172.16.0.1/32"), DB, 1, TCP, DENIED),
    # both sides, label sources
    Row("egress allowed but ingress denies", DENY_ALL_INGRESS + EGRESS_DNS, WEB, DB, 5432, TCP,
        DENIED),
    Row("any: source prefix", SOURCE_PREFIXES, TIEFIGHTER, DB, 1, TCP, ALLOWED),
    Row("reserved: source prefix", SOURCE_PREFIXES, reserved("host"), DB, 1, TCP, ALLOWED),
    Row("k8s: source excludes other sources", K8S_SOURCE_ONLY,
        frozenset({"container:org=empire"}), DB, 1, TCP, DENIED),
    Row("k8s: source matches k8s labels", K8S_SOURCE_ONLY, XWING | {"k8s:org=empire"}, DB, 1,
        TCP, ALLOWED),
]


def test_table_is_large_enough() -> None:
    assert len(ROWS) >= 40
    assert len({r.name for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_trace_verdict(row: Row) -> None:
    verdict, egress, ingress = traced(row.policies, row.src, row.dst, row.port, row.protocol)
    assert verdict is row.expected
    assert (egress is ALLOWED and ingress is ALLOWED) == (verdict is ALLOWED)


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_resolved_entries_verdict(row: Row) -> None:
    """The datapath's view (resolved entries) agrees with trace, side by side."""
    egress, ingress = resolved_verdicts(row.policies, row.src, row.dst, row.port, row.protocol)
    _, traced_egress, traced_ingress = traced(row.policies, row.src, row.dst, row.port,
                                              row.protocol)
    assert (egress, ingress) == (traced_egress, traced_ingress)
    assert (ALLOWED if egress is ALLOWED and ingress is ALLOWED else DENIED) is row.expected
