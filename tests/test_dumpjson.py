"""`bulkhead agent bpf ... -o json`: each map's rows as typed snake_case objects (README)."""

from __future__ import annotations

import json

from cli.dumpjson import row_json
from cli.output import encode


def test_lb_rows_split_into_typed_fields() -> None:
    cols = ["SERVICE ADDRESS", "BACKEND ADDRESS (REVNAT_ID) (SLOT)"]
    slot0 = row_json(cols, {cols[0]: "10.96.0.10:80/TCP",
                            cols[1]: "0.0.0.0:0 (7) (0) [ClusterIP, ClientIP affinity]"})
    assert slot0 == {"frontend_ip": "10.96.0.10", "frontend_port": 80, "protocol": "TCP",
                     "backend_ip": "0.0.0.0", "backend_port": 0, "revnat_id": 7, "slot": 0,
                     "flags": ["ClusterIP", "ClientIP affinity"]}
    backend = row_json(cols, {cols[0]: "10.96.0.10:80/TCP", cols[1]: "10.1.0.10:8080 (7) (2)"})
    assert (backend["backend_ip"], backend["backend_port"], backend["slot"],
            backend["flags"]) == ("10.1.0.10", 8080, 2, [])


def test_policy_and_ct_rows() -> None:
    cols = ["POLICY", "DIRECTION", "IDENTITY", "LABELS (source:key[=value])", "PORT/PROTO"]
    any_peer = row_json(cols, dict(zip(cols, ["Allow", "Ingress", "0", "ANY", "ANY"],
                                       strict=True)))
    assert any_peer == {"verdict": "Allow", "direction": "Ingress", "identity": 0,
                        "labels": [], "protocol": "ANY", "port_lo": 0, "port_hi": 65535}
    rule = row_json(cols, dict(zip(cols, ["Deny", "Egress", "25601",
                                          "k8s:class=xwing,k8s:org=alliance", "80-90/UDP"],
                                   strict=True)))
    assert (rule["identity"], rule["labels"], rule["port_lo"], rule["port_hi"]) == (
        25601, ["k8s:class=xwing", "k8s:org=alliance"], 80, 90)
    proxied = ["POLICY", "DIRECTION", "IDENTITY", "PORT/PROTO", "PROXY PORT"]
    assert [row_json(proxied, dict(zip(proxied, ["Allow", "Ingress", "301", "80/TCP", port],
                                       strict=True)))["proxy_port"]
            for port in ("15001", "NONE")] == [15001, 0]     # a number, as every number
    cols = ["PROTO", "SOURCE", "DESTINATION", "SRC IDENTITY", "DST IDENTITY", "FLAGS",
            "SERVICE NAT", "EXPIRES (s)", "AGE (s)"]
    ct = row_json(cols, dict(zip(cols, ["TCP", "10.1.0.5:40112", "10.2.0.7:80", "25601",
                                        "25873", "SYN,ACK", "-", "21599", "3"], strict=True)))
    assert ct == {"protocol": "TCP", "src_ip": "10.1.0.5", "src_port": 40112,
                  "dst_ip": "10.2.0.7", "dst_port": 80, "src_identity": 25601,
                  "dst_identity": 25873, "tcp_flags": ["SYN", "ACK"], "service_nat": "",
                  "expires_s": 21599, "age_s": 3}


def test_unknown_column_kept_under_its_snake_case_name_in_sorted_order() -> None:
    row = row_json(["IDENTITY", "NEW COLUMN (ms)"], {"IDENTITY": "2", "NEW COLUMN (ms)": "x"})
    assert list(json.loads(encode(row))) == ["identity", "new_column_ms"]
