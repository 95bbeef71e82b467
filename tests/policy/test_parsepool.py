"""Large policy files are parsed in a child process: same result as in place, same errors with
their paths, and a child that runs past its deadline is killed."""

from __future__ import annotations

import pytest

from controlplane.policy.parse import PolicyValidationError, parse_policies
from controlplane.policy.parsepool import INLINE_BYTES, ParseTimeout, parse_policies_off_loop

DOC = """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: p{i}, namespace: default}}
spec:
  endpointSelector: {{matchLabels: {{app: s{i}}}}}
  ingress:
  - fromEndpoints: [{{matchLabels: {{app: c{i}}}}}]
    toPorts: [{{ports: [{{port: "{port}", protocol: TCP}}]}}]
"""


def big_file(port: str = "80") -> str:
    text = "---\n".join(DOC.format(i=i, port=port) for i in range(200))
    assert len(text) > INLINE_BYTES   # really goes through the child
    return text


async def test_a_large_file_parses_in_a_child_as_in_place() -> None:
    text = big_file()
    assert await parse_policies_off_loop(text) == parse_policies(text)


async def test_a_large_invalid_file_reports_every_path() -> None:
    with pytest.raises(PolicyValidationError) as exc:
        await parse_policies_off_loop(big_file(port="99999"))
    fields = [v.field for v in exc.value.violations]
    assert len(fields) == 200
    assert fields[0] == "documents[0].spec.ingress[0].toPorts[0].ports[0].port"


async def test_a_child_past_its_deadline_is_killed() -> None:
    with pytest.raises(ParseTimeout):
        await parse_policies_off_loop(big_file(), timeout=0.001)
