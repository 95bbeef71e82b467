"""The README is the output contract: every documented `-o json` of `bulkhead`, `bulkhead
agent` and `bulkhead-lab` is run against a lab playing the README's walkthrough, and its keys
(nested ones included) and value types are checked against what the README's tables say;
a few documented table headers too. The README is parsed, not copied, so the programs and the
README cannot drift apart without this test failing (issue 19).

Shapes are read from the README's pseudo-JSON: `[{"a", "b": {"c"}, "d": [{"e"}]}]` is a list
of objects with keys a, b (an object with key c) and d (a list of objects with key e); a value
written `{...}` or `[...]` is not looked into, and a `...` among the keys means the list of
keys is not complete.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from integration.lab.lab import Lab
from integration.lab.story import MANIFEST, POLICY
from integration.labfixture import running_lab

pytestmark = [pytest.mark.datapath, pytest.mark.timeout(240)]
ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent

# -- the README's shapes ------------------------------------------------------------------------


@dataclass
class Shape:
    """An object's documented keys; `nested` for keys whose value is documented in turn."""

    keys: set[str] = field(default_factory=set)
    nested: dict[str, tuple[str, Shape]] = field(default_factory=dict)   # key -> (kind, shape)
    complete: bool = True


def _skip_group(text: str, i: int) -> int:
    """`text[i]` opens a bracket; returns the index after the one that closes it."""
    depth = 0
    while i < len(text):
        if text[i] in "{[(":
            depth += 1
        elif text[i] in "}])":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"unbalanced README shape: {text!r}")


def _placeholder(shape: Shape) -> bool:
    """`{"key": "value"}`, `{"MAP": N}`: a map with any keys, not an object with these."""
    return all(k == "key" or k.isupper() for k in shape.keys)


def _skip_value(text: str, i: int) -> int:
    """From `i`, past one value (brackets balanced) to the `,` or `}` that ends it."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c in "{[(":
            depth += 1
        elif c in "}])":
            if depth == 0:
                return i
            depth -= 1
        elif c == "," and depth == 0:
            return i
        elif c == '"':
            i = text.index('"', i + 1)
        i += 1
    return i


def _parse_object(text: str, i: int) -> tuple[Shape, int]:
    """`text[i]` is `{`; returns the shape and the index after its `}`."""
    shape = Shape()
    i += 1
    expecting_key = True
    while i < len(text):
        c = text[i]
        if c == "}":
            return shape, i + 1
        if c == ",":
            expecting_key = True
            i += 1
        elif c == '"' and expecting_key:
            end = text.index('"', i + 1)
            key = text[i + 1:end]
            shape.keys.add(key)
            expecting_key = False
            i = end + 1
            while i < len(text) and text[i].isspace():
                i += 1
            if i < len(text) and text[i] == ":":
                i += 1
                while text[i].isspace():
                    i += 1
                if text.startswith("{...}", i) or text.startswith("[...", i):
                    i = _skip_value(text, i)
                elif text[i] == "{":
                    nested, i = _parse_object(text, i)
                    if not _placeholder(nested):
                        shape.nested[key] = ("object", nested)
                elif text.startswith("[{", i):
                    nested, i = _parse_object(text, i + 1)
                    shape.nested[key] = ("list", nested)
                    i = text.index("]", i) + 1
                i = _skip_value(text, i)
        elif text.startswith("...", i) and expecting_key:
            shape.complete = False
            i += 3
        elif c in "([":
            i = _skip_group(text, i)   # a remark in parentheses, a list of values
        else:
            i += 1
    raise ValueError(f"unbalanced README shape: {text!r}")


def parse_shape(text: str) -> tuple[str, Shape]:
    """("list" | "object", shape) of the first `{` of a README code span."""
    text = text.replace("\\|", "|")
    start = text.index("{")
    kind = "list" if text[:start].rstrip().endswith("[") else "object"
    return kind, _parse_object(text, start)[0]


def json_tables() -> dict[str, str]:
    """First code span of the command cell → the JSON cell, from every `| command | JSON |`
    table of the README."""
    rows: dict[str, str] = {}
    in_table = False
    for line in README.splitlines():
        if line.startswith("| command | JSON |"):
            in_table = True
            continue
        if not line.startswith("|"):
            in_table = False
            continue
        if in_table and not line.startswith("|---"):
            cells = re.split(r"(?<!\\)\|", line)
            command = re.search(r"`([^`]*)`", cells[1])
            assert command, line
            rows[command.group(1)] = cells[2]
    return rows


def code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`]*)`", text.replace("\\|", "|"), flags=re.S)


def documented(command: str) -> tuple[str, Shape]:
    """The shape the README's JSON tables give `command`."""
    cell = json_tables()[command]
    span = next(s for s in code_spans(cell) if "{" in s)
    return parse_shape(span)


def documented_in_row(prefix: str, after: str = "") -> tuple[str, Shape]:
    """The shape in the README table row starting with `prefix` (the code span after the
    text `after`, when given)."""
    line = next(x for x in README.splitlines() if x.startswith(prefix))
    if after:
        line = line[line.index(after) + len(after):]
    return parse_shape(next(s for s in code_spans(line) if "{" in s))


# -- checking a value against a shape ---------------------------------------------------------

INTEGERS = {"revision", "created_revision", "acked_revision", "lag_revisions", "resumes",
            "snapshots", "id", "identity", "references", "remaining_references", "node_id",
            "port", "target_port", "rules", "cluster_id", "pid", "restarts", "mod_revision",
            "flows_held", "flows_max", "applied_revision", "flows_seen",
            "flows_sequence", "endpoint_id", "ifindex", "port_lo", "port_hi", "revnat_id",
            "slot", "frontend_port", "backend_port", "src_port", "dst_port", "src_identity",
            "dst_identity", "expires_s", "age_s", "packets", "bytes", "peer", "agent_pid"}
BOOLEANS = {"converged", "ingress_enforced", "egress_enforced", "healthy", "connected",
            "synced", "headless", "running", "enforced", "agent_running",
            "controlplane_running"}
COUNTERS = {"counts", "map_entries", "map_max", "map_writes"}   # name → number maps
DIGITS = re.compile(r"^-?\d+$")


def check_types(value: Any, path: str = "") -> None:
    """The README's JSON rule: numbers are JSON numbers (never digit strings), booleans are
    booleans."""
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            if key in INTEGERS:
                assert type(item) is int, f"{where}: {item!r} is not a number"
            if key in BOOLEANS:
                assert type(item) is bool, f"{where}: {item!r} is not a boolean"
            if key in COUNTERS:
                assert all(type(v) is int for v in item.values()), f"{where}: {item!r}"
            check_types(item, where)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            check_types(item, f"{path}[{n}]")
    elif isinstance(value, str):
        assert not DIGITS.match(value), f"{path}: the number {value!r} is written as a string"


def check_shape(value: Any, kind: str, shape: Shape, path: str) -> None:
    if kind == "list":
        assert isinstance(value, list), f"{path}: expected a list, got {value!r:.200}"
        for n, item in enumerate(value):
            check_shape(item, "object", shape, f"{path}[{n}]")
        return
    assert isinstance(value, dict), f"{path}: expected an object, got {value!r:.200}"
    if shape.complete:
        assert set(value) == shape.keys, (
            f"{path}: keys {sorted(value)} but the README says {sorted(shape.keys)}")
    else:
        assert shape.keys <= set(value), f"{path}: {sorted(shape.keys - set(value))} missing"
    for key, (nested_kind, nested) in shape.nested.items():
        if value.get(key) is not None:
            check_shape(value[key], nested_kind, nested, f"{path}.{key}")


def check(value: Any, kind: str, shape: Shape, path: str, extra: frozenset[str] = frozenset()
          ) -> None:
    if extra:
        shape = Shape(shape.keys | extra, shape.nested, shape.complete)
    check_shape(value, kind, shape, path)
    check_types(value, path)


def sorted_keys(text: str) -> bool:
    """Every object of a JSON text has its keys in sorted order (README: stable order)."""
    ok = True

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal ok
        keys = [k for k, _ in pairs]
        ok = ok and keys == sorted(keys)
        return dict(pairs)

    json.loads(text, object_pairs_hook=hook)
    return ok


# -- running the programs ---------------------------------------------------------------------


def run(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=120,
                          env=os.environ.copy())
    assert done.returncode == 0, (argv, done.stderr)
    return done.stdout


def bulkhead(*args: str) -> str:
    return run(str(BIN / "bulkhead"), *args)


def bulkhead_json(*args: str) -> Any:
    text = bulkhead(*args, "-o", "json")
    assert sorted_keys(text), f"bulkhead {' '.join(args)}: keys not in sorted order"
    return json.loads(text)


def lab_cli(lab: Lab, *args: str) -> str:
    return run(sys.executable, "-m", "integration.lab.cli", "--name", lab.name, *args)


@dataclass
class Played:
    lab: Lab
    applied: dict[str, Any]        # bulkhead-lab apply -o json
    policy: dict[str, Any]         # bulkhead policy apply --wait -o json
    deathstar_n1: str


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Played]:
    """The walkthrough: the demo's app, rule1 with --wait, one landing of each ship."""
    with running_lab(tmp_path_factory.mktemp("contract")) as lab:
        applied = json.loads(lab_cli(lab, "apply", "-f", str(MANIFEST), "-o", "json"))
        policy = bulkhead_json("policy", "apply", "-f", str(POLICY), "--wait")
        url = "deathstar.default.svc.cluster.local/v1/request-landing"
        assert lab.exec("tiefighter", ["curl", "-s", "-o", "/dev/null", "-XPOST", url]) == 0
        assert lab.exec("xwing", ["curl", "-s", "-o", "/dev/null", "-m", "2", "-XPOST",
                                  url]) == 28
        deathstar = next(p.name for p in lab.state().pods.values()
                         if p.name.startswith("deathstar-") and p.node == "n1")
        yield Played(lab, applied, policy, deathstar)


# -- the tests --------------------------------------------------------------------------------


def test_the_readme_tables_parse() -> None:
    """The parser reads what the README means (so the checks below check something)."""
    kind, shape = documented("node list")
    assert kind == "list" and {"name", "acked_revision", "tunnel"} <= shape.keys
    assert shape.nested["tunnel"][1].keys == {"ip", "port"}
    kind, shape = documented("status")
    assert kind == "object" and shape.nested["counts"][1].keys >= {"identities", "nodes"}
    assert "embedded_etcd" in shape.keys and "flows" in shape.keys
    kind, shape = documented("policy wait")
    assert shape.nested["pending"][0] == "list" and "covered" in shape.keys
    kind, shape = documented("agent bpf lb list")
    assert "revnat_id" in shape.keys


def test_every_documented_json_of_bulkhead(played: Played) -> None:
    rows = json_tables()
    seen: set[str] = set()

    def expect(command: str, value: Any, *, item: bool = False,
               extra: frozenset[str] = frozenset()) -> None:
        kind, shape = documented(command)
        check(value, "object" if item else kind, shape, command, extra)
        seen.add(command)

    expect("policy apply", played.policy)
    assert played.policy["wait"]["converged"] is True
    allocated = bulkhead_json("identity", "allocate", "k8s:app=contract")
    expect("identity allocate", allocated)
    expect("identity list", bulkhead_json("identity", "list"))
    expect("identity list", bulkhead_json("identity", "get", str(allocated["id"])), item=True)
    expect("identity list", bulkhead_json("identity", "lookup", "k8s:app=contract"), item=True)
    expect("identity release", bulkhead_json("identity", "release", str(allocated["id"])))
    nodes = bulkhead_json("node", "list")
    expect("node list", nodes)
    assert all(n["acked_revision"] > 0 for n in nodes)
    expect("endpoint list", bulkhead_json("endpoint", "list"))
    expect("endpoint list", bulkhead_json("endpoint", "create", "contract", "--node", "n1",
                                          "--labels", "k8s:app=contract"), item=True)
    expect("endpoint delete", bulkhead_json("endpoint", "delete", "default/contract"))
    expect("ipcache list", bulkhead_json("ipcache", "list"))
    expect("policy list", bulkhead_json("policy", "list"))
    expect("policy list", bulkhead_json("policy", "get", "default/rule1"), item=True,
           extra=frozenset({"yaml"}))
    deathstar = next(p for p in played.lab.state().pods.values()
                     if p.name == played.deathstar_n1)
    expect("policy resolve", bulkhead_json("policy", "resolve", "--identity",
                                           str(deathstar.identity)))
    expect("policy resolve --node", bulkhead_json("policy", "resolve", "--node", "n1"))
    traced = bulkhead_json(
        "policy", "trace", "--src", "k8s:org=alliance,k8s:class=xwing,"
        "k8s:io.kubernetes.pod.namespace=default", "--dst", "k8s:org=empire,"
        "k8s:class=deathstar,k8s:io.kubernetes.pod.namespace=default", "--dport", "80/TCP")
    expect("policy trace", traced)
    assert traced["ingress"]["enforced_by"] == ["default/rule1"]   # README: names rule1
    expect("status", bulkhead_json("status"))
    if "clustermesh status" in rows:   # the lab is one cluster: no remote to connect
        expect("clustermesh status", bulkhead_json("clustermesh", "status"))
    expect("policy wait", bulkhead_json("policy", "wait", "--revision",
                                        str(played.policy["revision"])))
    expect("service apply", bulkhead_json("service", "apply", "-f", str(MANIFEST)))
    expect("service list", bulkhead_json("service", "list"))
    expect("service list", bulkhead_json("service", "get", "default/deathstar"), item=True)
    contract = ("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n"
                "metadata: {name: contract, namespace: default}\n"
                "spec:\n  endpointSelector: {matchLabels: {app: contract}}\n"
                "  ingress: [{}]\n")
    run(str(BIN / "bulkhead"), "policy", "apply", "-f", "-", stdin=contract)
    expect("policy delete", bulkhead_json("policy", "delete", "default/contract"))
    service = ("apiVersion: v1\nkind: Service\nmetadata: {name: contract}\n"
               "spec:\n  selector: {app: contract}\n  ports: [{port: 80}]\n")
    run(str(BIN / "bulkhead"), "service", "apply", "-f", "-", stdin=service)
    expect("service delete", bulkhead_json("service", "delete", "default/contract"))
    expect("fqdn cache list", bulkhead_json("fqdn", "--node", "n1", "cache", "list"))
    if "connectivity test" in rows:   # one quick test: the row's shape, not the scenarios
        report = bulkhead_json("connectivity", "test", "--test", "^no-policies$")
        expect("connectivity test", report)
        assert report["summary"]["successful"] is True
    cli_rows = {c for c in rows if not c.startswith("agent ")}
    assert cli_rows <= seen, f"documented but not run: {sorted(cli_rows - seen)}"


def test_every_documented_json_of_the_agent(played: Played) -> None:
    rows = json_tables()
    seen: set[str] = set()
    for command, argv in [
            ("agent status", ["status"]),
            ("agent endpoint list", ["endpoint", "list"]),
            ("agent bpf endpoint list", ["bpf", "endpoint", "list"]),
            ("agent bpf ipcache list", ["bpf", "ipcache", "list"]),
            ("agent bpf tunnel list", ["bpf", "tunnel", "list"]),
            ("agent bpf policy get EP", ["bpf", "policy", "get",
                                         f"default/{played.deathstar_n1}"]),
            ("agent bpf ct list", ["bpf", "ct", "list"]),
            ("agent bpf lb list", ["bpf", "lb", "list"]),
            ("agent bpf counters list [EP]", ["bpf", "counters", "list"])]:
        value = bulkhead_json("agent", "--node", "n1", *argv)
        assert value, f"{command}: nothing to check"
        kind, shape = documented(command)
        check(value, kind, shape, command)
        seen.add(command)
    assert bulkhead_json("agent", "--node", "n1", "status")["applied_revision"] >= \
        played.policy["revision"]
    # Flows: one object per line, the keys of `observe -o json` (README, "Flows and metrics").
    prose = re.search(r"`-o json` prints one object per line: `([^`]*)`", README, flags=re.S)
    assert prose is not None
    kind, shape = parse_shape(prose.group(1))
    for argv in (["agent", "--node", "n1", "flows", "--last", "20"],
                 ["observe", "--last", "50"]):
        lines = bulkhead(*argv, "-o", "json").splitlines()
        assert lines, argv
        for n, text in enumerate(lines):
            assert sorted_keys(text), argv
            flow = json.loads(text)
            # README: "An L7 flow also has `l7`" (HTTP requests and responses, DNS queries and
            # answers of the agent's DNS proxy), with `http` or `dns` beside type and latency.
            l7 = frozenset({"l7"}) if flow["type"] == "L7" else frozenset()
            check(flow, kind, shape, f"{' '.join(argv)}[{n}]", l7)
            if l7:
                assert set(flow["l7"]) in ({"type", "latency_ns", "http"},
                                           {"type", "latency_ns", "dns"}), flow["l7"]
    seen.add("agent flows")
    flows = [json.loads(x) for x in bulkhead("observe", "--last", "200", "-o", "json")
             .splitlines()]
    # The tiefighter's landing: rule1 allowed the deathstar's ingress, nothing decided the
    # tiefighter's egress (README: L3-L4 only when a rule matched).
    landing = [f for f in flows if f["source"]["pod"] == "tiefighter"
               and f["verdict"] == "FORWARDED" and f["destination"]["port"] == 80]
    assert {(f["direction"], f["policy_match"]) for f in landing} >= {("ingress", "L3-L4"),
                                                                      ("egress", "none")}
    agent_rows = {c for c in rows if c.startswith("agent ")}
    assert agent_rows <= seen, f"documented but not run: {sorted(agent_rows - seen)}"


def test_every_documented_json_of_the_lab(played: Played) -> None:
    lab = played.lab
    kind, shape = documented_in_row("| `bulkhead-lab apply", after="`-o json`:")
    check(played.applied, kind, shape, "bulkhead-lab apply")
    assert all(p["labels"] == sorted(p["labels"]) for p in played.applied["pods"])
    kind, shape = documented_in_row("| `bulkhead-lab pod list")
    pods = json.loads(lab_cli(lab, "pod", "list", "-o", "json"))
    check(pods, kind, shape, "bulkhead-lab pod list")
    assert all(p["labels"] == sorted(p["labels"]) for p in pods)
    kind, shape = documented_in_row("| `bulkhead-lab status", after="`-o json`:")
    status = json.loads(lab_cli(lab, "status", "-o", "json"))
    check(status, kind, shape, "bulkhead-lab status")
    cidrs = {n["name"]: n["pod_cidr"] for n in bulkhead_json("node", "list")}
    assert {n["name"]: n["pod_cidr"] for n in status["nodes"]} == cidrs
    assert all(re.fullmatch(r"\d+\.\d+\.\d+\.\d+/\d+", c) for c in cidrs.values()), cidrs
    # pod delete says what it removed, in words and in JSON.
    lab.pod_create("contract-a", "n2", "default", ["app=contract"])
    lab.pod_create("contract-b", "n2", "default", ["app=contract"])
    said = lab_cli(lab, "pod", "delete", "contract-a")
    assert said.startswith("pod default/contract-a deleted from n2 ("), said
    kind, shape = documented_in_row("| `bulkhead-lab pod delete", after="`-o json`:")
    check(json.loads(lab_cli(lab, "pod", "delete", "contract-b", "-o", "json")), kind, shape,
          "bulkhead-lab pod delete")


def _columns(line: str) -> list[str]:
    return [c for c in re.split(r"\s{2,}", line.strip()) if c]


def test_documented_table_headers(played: Played) -> None:
    """Columns the README names are the ones printed."""
    row = next(x for x in README.splitlines() if x.startswith("| `bulkhead service list"))
    wanted = _columns(next(s for s in code_spans(row) if s.startswith("ID ")))
    assert _columns(bulkhead("service", "list").splitlines()[0]) == wanted
    lb_doc = next(x for x in README.splitlines() if x.strip().startswith("SERVICE ADDRESS"))
    lb = bulkhead("agent", "--node", "n1", "bpf", "lb", "list").splitlines()
    assert _columns(lb[0]) == _columns(lb_doc)
    row = next(x for x in README.splitlines() if x.startswith("| `bulkhead endpoint list"))
    spans = code_spans(row)
    wanted = [s for s in spans[spans.index("ENDPOINT"):spans.index("IPv4") + 1]
              if s != "NS/NAME"]
    # Two-line headers: `POLICY (ingress)` over `ENFORCEMENT`, aligned on the column.
    first, second = bulkhead("endpoint", "list").splitlines()[:2]
    below = {m.start(): m.group() for m in re.finditer(r"\S+(?: \S+)*", second)}
    merged = [f"{m.group()} {below[m.start()]}" if m.start() in below else m.group()
              for m in re.finditer(r"\S+(?: \S+)*", first)]
    assert merged == wanted, (merged, wanted)
