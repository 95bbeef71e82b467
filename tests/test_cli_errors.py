"""Values the API cannot carry get one line naming the argument and exit 1 from the real
`bulkhead` CLI (against a real replica), never a Python traceback."""

from __future__ import annotations

import pytest

from tests.conftest import ReplicaFactory
from tests.test_cli import bulkhead

pytestmark = pytest.mark.timeout(120)

CASES = [
    (["identity", "get", "--", "-1"], "ID"),
    (["identity", "get", "4294967296"], "ID"),
    (["identity", "release", "--", "-7"], "ID"),
    (["policy", "resolve", "--identity", "-1"], "--identity"),
    (["policy", "wait", "--revision", "99999999999999999999"], "--revision"),
    (["policy", "wait", "--revision", "1", "--identity", "-1"], "--identity"),
    (["policy", "wait", "--revision", "1", "--timeout", "inf"], "--timeout"),
    (["policy", "wait", "--revision", "1", "--timeout", "nan"], "--timeout"),
    (["observe", "--since", "99999999999h"], "--since"),
    (["observe", "--last", "99999999999"], "--last"),
    (["observe", "--from-identity", "-1"], "--from-identity"),
    (["observe", "--port", "70000"], "--port"),
    (["observe", "--from-ip", "10.0.0.300"], "--from-ip"),
    (["observe", "--to-ip", "deathstar"], "--to-ip"),
    (["endpoint", "list", "--identity", "-1"], "--identity"),
    (["ipcache", "list", "--identity", "4294967296"], "--identity"),
    (["identity", "get", "twelve"], "ID"),
    (["policy", "trace", "--src", "k8s:a=b", "--dst", "k8s:c=d", "--dport",
      "99999999999/TCP"], "--dport"),
    (["policy", "trace", "--src", "k8s:a=b", "--dst", "k8s:c=d", "--dport", "256/ICMP"],
     "--dport"),
]


@pytest.mark.parametrize(("args", "name"), CASES, ids=[" ".join(c[0]) for c in CASES])
async def test_out_of_range_values_are_one_line_and_exit_1(
        replicas: ReplicaFactory, args: list[str], name: str) -> None:
    replica = await replicas()
    rc, out, err = await bulkhead(replica.address, *args)
    assert "Traceback" not in err, err
    assert rc == 1, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"bulkhead: {name}: "), err


async def test_values_in_range_still_work(replicas: ReplicaFactory) -> None:
    replica = await replicas()
    rc, out, err = await bulkhead(replica.address, "identity", "get", "2")
    assert rc == 0 and "reserved:world" in out, err
    rc, _, err = await bulkhead(replica.address, "identity", "get", "4294967295")
    assert rc == 1 and err.startswith("bulkhead: NOT_FOUND"), err
    rc, _, err = await bulkhead(replica.address, "observe", "--since", "5m", "--port", "65535",
                                "--last", "0")
    assert rc == 0, err
