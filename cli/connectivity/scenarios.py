"""The tests of `bulkhead connectivity test`, modelled on cilium-cli's connectivity tests.

Test pods (namespace bulkhead-test): `client` and `client2` (both kind=client; client2 also
other=client) and `echo-same` (kind=echo) on node A, `echo-other` (kind=echo) on node B; the
echo pods serve HTTP (and UDP echo) on ECHO_PORT and OTHER_PORT. The service `echo` selects
kind=echo (port 80 -> ECHO_PORT, 90 -> OTHER_PORT). Each test applies its own policies (in the
namespace bulkhead-test), runs its actions and removes the policies again.

An action names a source (a pod, or `host-a`: node A itself), a target (a pod, `service`,
`node-a`, or `external`: --external-ip) and what the probe must see: `allow` (answered; a
FORWARDED flow), `default-deny` (no answer; DROPPED "Policy denied"), `deny` (no answer;
DROPPED "Policy denied by denylist") or `l7-deny` (HTTP 403; an L7 DROPPED flow).
"""

from __future__ import annotations

from dataclasses import dataclass, field

NAMESPACE = "bulkhead-test"
ECHO_PORT = 8080
OTHER_PORT = 9090
SERVICE = "echo"
SERVICE_PORT = 80
SERVICE_OTHER_PORT = 90

ALLOW, DEFAULT_DENY, DENY, L7_DENY = "allow", "default-deny", "deny", "l7-deny"
DROP_REASONS = {DEFAULT_DENY: "Policy denied", DENY: "Policy denied by denylist"}


@dataclass(frozen=True)
class Pod:
    name: str
    node: str                   # "a" or "b"
    labels: tuple[str, ...]
    serve: tuple[int, ...] = ()


PODS = (
    Pod("client", "a", ("kind=client", "name=client")),
    Pod("client2", "a", ("kind=client", "name=client2", "other=client")),
    Pod("echo-same", "a", ("kind=echo", "name=echo-same"), (ECHO_PORT, OTHER_PORT)),
    Pod("echo-other", "b", ("kind=echo", "name=echo-other"), (ECHO_PORT, OTHER_PORT)),
)

SERVICE_YAML = f"""apiVersion: v1
kind: Service
metadata:
  name: {SERVICE}
  namespace: {NAMESPACE}
spec:
  selector:
    kind: echo
  ports:
  - name: http
    port: {SERVICE_PORT}
    targetPort: {ECHO_PORT}
    protocol: TCP
  - name: other
    port: {SERVICE_OTHER_PORT}
    targetPort: {OTHER_PORT}
    protocol: TCP
"""


@dataclass(frozen=True)
class Action:
    source: str
    target: str
    kind: str                   # tcp | http | udp | icmp
    expect: str
    port: int = 0
    method: str = ""
    path: str = ""

    @property
    def name(self) -> str:
        what = self.kind
        if self.kind == "http":
            what = f"http {self.method or 'GET'} {self.path or '/'}"
        where = f"{self.target}:{self.port}" if self.port else self.target
        return f"{self.source} -> {where} ({what})"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    actions: tuple[Action, ...]
    policies: tuple[str, ...] = ()     # CiliumNetworkPolicy specs (YAML below `spec:`)
    needs: frozenset[str] = field(default_factory=frozenset)  # "external", "service"


def policy_yaml(scenario: Scenario, external_ip: str = "") -> str:
    """The scenario's policies as documents in the namespace bulkhead-test (`{external}`
    stands for --external-ip)."""
    docs = []
    for i, spec in enumerate(scenario.policies):
        body = "\n".join(f"  {line}" if line else "" for line in spec.strip("\n").splitlines())
        docs.append(f"apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n"
                    f"  name: {scenario.name}-{i}\n  namespace: {NAMESPACE}\nspec:\n{body}\n")
    return "---\n".join(docs).replace("{external}", external_ip)


def _http(source: str, target: str, expect: str, port: int = ECHO_PORT, method: str = "",
          path: str = "") -> Action:
    return Action(source, target, "http", expect, port, method, path)


ECHO = "endpointSelector:\n  matchLabels:\n    kind: echo\n"
CLIENT = "endpointSelector:\n  matchLabels:\n    kind: client\n"
FROM_CLIENTS = "- fromEndpoints:\n  - matchLabels:\n      kind: client\n"

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("no-policies", "no policy selects the test pods: everything is allowed", (
        _http("client", "echo-same", ALLOW),
        _http("client", "echo-other", ALLOW),
        Action("client", "echo-other", "udp", ALLOW, ECHO_PORT),
        Action("client", "echo-same", "icmp", ALLOW),
        Action("client", "echo-other", "icmp", ALLOW),
        Action("host-a", "echo-same", "tcp", ALLOW, ECHO_PORT),
        Action("client", "node-a", "icmp", ALLOW),
    )),
    Scenario("no-policies-service", "pod to service without policies", (
        _http("client", "service", ALLOW, SERVICE_PORT),
    ), needs=frozenset({"service"})),
    Scenario("client-ingress", "echo pods accept ingress from clients only", (
        _http("client", "echo-same", ALLOW),
        _http("client2", "echo-other", ALLOW),
        _http("echo-same", "echo-other", DEFAULT_DENY),
    ), policies=(ECHO + "ingress:\n" + FROM_CLIENTS,)),
    Scenario("all-ingress-deny", "an empty ingress rule selects every pod and allows nothing", (
        _http("client", "echo-same", DEFAULT_DENY),
        _http("client", "echo-other", DEFAULT_DENY),
        Action("client", "echo-other", "udp", DEFAULT_DENY, ECHO_PORT),
    ), policies=("endpointSelector: {}\ningress:\n- {}\n",)),
    Scenario("all-egress-deny", "an empty egress rule selects every pod and allows nothing", (
        _http("client", "echo-same", DEFAULT_DENY),
        _http("client", "echo-other", DEFAULT_DENY),
        Action("client", "echo-same", "icmp", DEFAULT_DENY),
    ), policies=("endpointSelector: {}\negress:\n- {}\n",)),
    Scenario("ingress-from-other-client-deny",
             "echo allows clients, but an ingressDeny rule refuses those with other=client", (
                 _http("client", "echo-other", ALLOW),
                 _http("client2", "echo-other", DENY),
                 _http("client2", "echo-same", DENY),
             ), policies=(ECHO + "ingress:\n" + FROM_CLIENTS + "ingressDeny:\n"
                          "- fromEndpoints:\n  - matchLabels:\n      other: client\n",)),
    Scenario("client-egress-expressions",
             "clients may reach echo pods whose name is not echo-same (matchExpressions)", (
                 _http("client", "echo-other", ALLOW),
                 _http("client", "echo-same", DEFAULT_DENY),
             ), policies=(CLIENT + "egress:\n- toEndpoints:\n  - matchExpressions:\n"
                          "    - {key: kind, operator: In, values: [echo]}\n"
                          "    - {key: name, operator: NotIn, values: [echo-same]}\n",)),
    Scenario("entities-cluster", "clients may reach the cluster entity only", (
        _http("client", "echo-other", ALLOW),
        _http("client", "echo-same", ALLOW),
    ), policies=(CLIENT + "egress:\n- toEntities: [cluster]\n",)),
    Scenario("entities-host", "clients may reach their node (the host entity) only", (
        Action("client", "node-a", "icmp", ALLOW),
        _http("client", "echo-same", DEFAULT_DENY),
    ), policies=(CLIENT + "egress:\n- toEntities: [host]\n",)),
    Scenario("entities-world", "clients may reach the world entity only", (
        Action("client", "external", "icmp", ALLOW),
        _http("client", "echo-other", DEFAULT_DENY),
    ), policies=(CLIENT + "egress:\n- toEntities: [world]\n",),
        needs=frozenset({"external"})),
    Scenario("to-cidr", "clients may reach the external address by CIDR only", (
        Action("client", "external", "icmp", ALLOW),
        _http("client", "echo-same", DEFAULT_DENY),
    ), policies=(CLIENT + "egress:\n- toCIDR: ['{external}/32']\n",),
        needs=frozenset({"external"})),
    Scenario("port-range", "echo accepts clients on ports 8000-8100 only", (
        _http("client", "echo-other", ALLOW, ECHO_PORT),
        _http("client", "echo-other", DEFAULT_DENY, OTHER_PORT),
    ), policies=(ECHO + "ingress:\n" + FROM_CLIENTS + "  toPorts:\n  - ports:\n"
                 "    - {port: '8000', endPort: 8100, protocol: TCP}\n",)),
    Scenario("deny-precedence", "an ingressDeny on one port beats the allow of every port", (
        _http("client", "echo-same", ALLOW, ECHO_PORT),
        _http("client", "echo-same", DENY, OTHER_PORT),
        _http("client", "echo-other", DENY, OTHER_PORT),
    ), policies=(ECHO + "ingress:\n" + FROM_CLIENTS + "ingressDeny:\n" + FROM_CLIENTS
                 + f"  toPorts:\n  - ports:\n    - {{port: '{OTHER_PORT}', protocol: TCP}}\n",)),
    Scenario("l7-method-path", "echo accepts GET /public from clients (HTTP rules)", (
        _http("client", "echo-other", ALLOW, method="GET", path="/public"),
        _http("client", "echo-other", L7_DENY, method="POST", path="/public"),
        _http("client", "echo-same", L7_DENY, method="GET", path="/private"),
    ), policies=(ECHO + "ingress:\n" + FROM_CLIENTS + "  toPorts:\n  - ports:\n"
                 f"    - {{port: '{ECHO_PORT}', protocol: TCP}}\n    rules:\n      http:\n"
                 "      - {method: GET, path: /public}\n",)),
    Scenario("service-policy", "clients may reach echo's port 8080 behind the service", (
        _http("client", "service", ALLOW, SERVICE_PORT),
        _http("client", "service", DEFAULT_DENY, SERVICE_OTHER_PORT),
    ), policies=(CLIENT + "egress:\n- toEndpoints:\n  - matchLabels:\n      kind: echo\n"
                 f"  toPorts:\n  - ports:\n    - {{port: '{ECHO_PORT}', protocol: TCP}}\n",),
        needs=frozenset({"service"})),
)
