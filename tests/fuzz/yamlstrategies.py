"""Hypothesis strategies for policy and service manifests: plausible documents (the shapes of
CiliumNetworkPolicy and Kubernetes Service) in which any value may be swapped for an arbitrary
YAML value (NUL bytes, huge and negative numbers, deep nesting, wrong types, odd keys)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

_SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(1 << 70), 1 << 70), st.sampled_from([-1, 0, 1, 65535, 65536, 1 << 31, 1 << 63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(["", "\0", "a\0b", "x" * 70000, "*", "TCP", "80",
                                           "k8s:a=b", "10.0.0.0/8", "::/0", "0.0.0.0/0"]),
)


def _deep(depth: int, leaf: Any) -> Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


ANY_VALUE: st.SearchStrategy[Any] = st.one_of(
    st.recursive(_SCALARS, lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=10), st.integers(), st.none(),
                                  st.booleans()), inner, max_size=4)), max_leaves=12),
    st.builds(_deep, st.sampled_from([30, 63, 64, 65, 200]), _SCALARS),
)
"""Any value YAML can carry: scalars of every type, lists, maps with non-string keys, and
nesting up to far beyond the parsers' 64-level limit."""

NAMES = st.sampled_from(["rule1", "a", "web", "x" * 253, "x" * 254, "A", "-a", "a.b", "", "\0"])
LABEL_KEYS = st.sampled_from(["app", "org", "class", "io.kubernetes.pod.namespace",
                              "k8s:app", "example.com/name", "a/b/c", "", "-", "x" * 64])
LABEL_VALUES = st.sampled_from(["web", "empire", "", "x" * 63, "x" * 64, "a b", "-a"])
PORTS = st.one_of(st.sampled_from(["80", "0", "65535", "65536", "-1", "http", "8080",
                                   "a" * 16]), st.integers(-5, 70000))
PROTOCOLS = st.sampled_from(["TCP", "UDP", "SCTP", "ANY", "ICMP", "tcp", ""])
ENTITIES = st.sampled_from(["world", "cluster", "host", "all", "remote-node", "health",
                            "kube-apiserver", "nonsense"])
CIDRS = st.sampled_from(["10.0.0.0/8", "10.1.2.3/32", "0.0.0.0/0", "10.0.0.1/33",
                         "fe80::/64", "10.0.0.0", "nonsense"])


@st.composite
def _slot(draw: st.DrawFn, valid: st.SearchStrategy[Any], mutate: bool) -> Any:
    """`valid`'s value, or (while mutating, one time in eight) an arbitrary one."""
    if mutate and draw(st.integers(0, 7)) == 0:
        return draw(ANY_VALUE)
    return draw(valid)


def _mapping(draw: st.DrawFn, mutate: bool, items: dict[str, st.SearchStrategy[Any]],
             required: tuple[str, ...] = ()) -> dict[Any, Any]:
    chosen = set(required) | set(draw(st.lists(st.sampled_from(sorted(items)), max_size=3)))
    out: dict[Any, Any] = {k: draw(_slot(items[k], mutate)) for k in sorted(chosen)}
    if mutate and draw(st.integers(0, 9)) == 0:
        out[draw(st.one_of(st.text(max_size=8), st.integers()))] = draw(ANY_VALUE)
    return out


@st.composite
def _selector(draw: st.DrawFn, mutate: bool) -> dict[Any, Any]:
    expression = st.fixed_dictionaries({
        "key": LABEL_KEYS,
        "operator": st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist", "Bogus"]),
    }, optional={"values": st.lists(LABEL_VALUES, max_size=3)})
    return _mapping(draw, mutate, {
        "matchLabels": st.dictionaries(LABEL_KEYS, LABEL_VALUES, max_size=3),
        "matchExpressions": st.lists(expression, max_size=2),
    })


@st.composite
def _rule(draw: st.DrawFn, mutate: bool, ingress: bool) -> dict[Any, Any]:
    peer = "from" if ingress else "to"
    port = st.fixed_dictionaries({"port": PORTS}, optional={"protocol": PROTOCOLS,
                                                            "endPort": PORTS})
    http = st.fixed_dictionaries({}, optional={
        "method": st.sampled_from(["GET", "POST", "[", ".*"]),
        "path": st.sampled_from(["/v1/", "/v1/.*", "(", ""]),
        "headers": st.lists(st.sampled_from(["X-A: b", "X-A", ""]), max_size=2)})
    to_ports = st.lists(st.fixed_dictionaries(
        {"ports": st.lists(port, max_size=2)},
        optional={"rules": st.fixed_dictionaries({"http": st.lists(http, max_size=2)})}),
        max_size=2)
    items: dict[str, st.SearchStrategy[Any]] = {
        f"{peer}Endpoints": st.lists(_selector(mutate), max_size=2),
        f"{peer}Entities": st.lists(ENTITIES, max_size=2),
        f"{peer}CIDR": st.lists(CIDRS, max_size=2),
        f"{peer}CIDRSet": st.lists(st.fixed_dictionaries(
            {"cidr": CIDRS}, optional={"except": st.lists(CIDRS, max_size=2)}), max_size=2),
        f"{peer}Requires": st.lists(_selector(mutate), max_size=1),
        "toPorts": to_ports,
        "icmps": st.lists(st.fixed_dictionaries({"fields": st.lists(st.fixed_dictionaries(
            {"type": st.one_of(st.integers(-1, 300), st.sampled_from(["EchoRequest", "Bogus"]))},
            optional={"family": st.sampled_from(["IPv4", "IPv6", "IPv5"])}), max_size=2)}),
            max_size=1),
    }
    if not ingress:
        items["toServices"] = st.lists(st.fixed_dictionaries({}, optional={
            "k8sService": st.fixed_dictionaries({"serviceName": NAMES},
                                                optional={"namespace": NAMES}),
            "k8sServiceSelector": st.fixed_dictionaries({"selector": _selector(mutate)},
                                                        optional={"namespace": NAMES})}),
            max_size=1)
    return _mapping(draw, mutate, items)


@st.composite
def policy_document(draw: st.DrawFn) -> Any:
    mutate = draw(st.booleans())
    clusterwide = draw(st.booleans())
    metadata = st.fixed_dictionaries({"name": NAMES}, optional={"namespace": NAMES})
    spec_items: dict[str, st.SearchStrategy[Any]] = {
        "endpointSelector": _selector(mutate),
        "nodeSelector": _selector(mutate),
        "ingress": st.lists(_rule(mutate, True), max_size=2),
        "egress": st.lists(_rule(mutate, False), max_size=2),
        "ingressDeny": st.lists(_rule(mutate, True), max_size=1),
        "egressDeny": st.lists(_rule(mutate, False), max_size=1),
        "description": st.text(max_size=10),
    }

    @st.composite
    def spec(d: st.DrawFn) -> dict[Any, Any]:
        return _mapping(d, mutate, spec_items, ("endpointSelector",))

    document = _mapping(draw, mutate, {
        "apiVersion": st.sampled_from(["cilium.io/v2", "cilium.io/v1", "v1"]),
        "kind": st.just("CiliumClusterwideNetworkPolicy" if clusterwide
                        else "CiliumNetworkPolicy"),
        "metadata": metadata,
        "spec": spec(),
        "specs": st.lists(spec(), max_size=2),
    }, ("apiVersion", "kind", "metadata"))
    return draw(_slot(st.just(document), mutate))


@st.composite
def service_document(draw: st.DrawFn) -> Any:
    mutate = draw(st.booleans())
    port = st.fixed_dictionaries({"port": PORTS}, optional={
        "name": NAMES, "protocol": PROTOCOLS, "targetPort": PORTS,
        "nodePort": st.integers(-1, 70000)})
    spec = st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]),
        "clusterIP": st.sampled_from(["None", "10.96.0.10", "10.96.0.1", "1.2.3.4", "", "x"]),
        "selector": st.dictionaries(LABEL_KEYS, LABEL_VALUES, max_size=3),
        "ports": st.lists(port, max_size=3),
        "sessionAffinity": st.sampled_from(["None", "ClientIP", "Sticky"]),
    })
    document = _mapping(draw, mutate, {
        "apiVersion": st.sampled_from(["v1", "apps/v1", "v2"]),
        "kind": st.sampled_from(["Service", "Deployment", "Pod"]),
        "metadata": st.fixed_dictionaries({"name": NAMES}, optional={
            "namespace": NAMES, "labels": st.dictionaries(LABEL_KEYS, LABEL_VALUES, max_size=2),
            "annotations": st.dictionaries(st.text(max_size=5), st.text(max_size=5),
                                           max_size=2)}),
        "spec": spec,
    }, ("apiVersion", "kind", "metadata"))
    return draw(_slot(st.just(document), mutate))


def manifests() -> st.SearchStrategy[list[Any]]:
    """A list of documents for one file: policies or services (or anything)."""
    return st.one_of(st.lists(policy_document(), min_size=1, max_size=3),
                     st.lists(service_document(), min_size=1, max_size=3),
                     st.lists(ANY_VALUE, max_size=2))
