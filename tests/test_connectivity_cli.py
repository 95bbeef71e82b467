"""`bulkhead connectivity test` without a cluster: the tests it knows, their policies (valid
for the control plane's parser), and bad flags refused in one line before anything is
created. The runs themselves are in integration/test_connectivity.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bulkhead.defaults import EXTERNAL_IP_FILE
from cli.connectivity.scenarios import SCENARIOS, policy_yaml
from controlplane.policy.parse import parse_policies

BIN = Path(sys.executable).parent


def bulkhead(*args: str) -> subprocess.CompletedProcess[str]:
    # A server nobody listens on: any attempt to connect would fail differently.
    return subprocess.run([str(BIN / "bulkhead"), "--server", "127.0.0.1:1", "connectivity",
                           "test", *args], capture_output=True, text=True, timeout=60)


def test_every_scenario_policy_is_valid() -> None:
    for scenario in SCENARIOS:
        text = policy_yaml(scenario, "192.0.2.254")
        if scenario.policies:
            policies = parse_policies(text)
            assert [p.key.namespace for p in policies] == ["bulkhead-test"] * len(policies)
        else:
            assert text == ""


def test_list_and_select_tests() -> None:
    done = bulkhead("--list")
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()] == \
        [s.name for s in SCENARIOS]
    done = bulkhead("--list", "--test", "deny", "--test", "!egress")
    assert [line.split()[0] for line in done.stdout.splitlines()] == [
        "all-ingress-deny", "ingress-from-other-client-deny", "deny-precedence"]


@pytest.mark.parametrize(("args", "message"), [
    (["--test", "nothing-like-this"], "bulkhead: --test: no test matches"),
    (["--test", "("], "bulkhead: --test: not a regular expression"),
    (["--external-ip", "world"], "bulkhead: --external-ip: not an IPv4 address: 'world'"),
    (["--node", "n1"], "bulkhead: --node: give it twice"),
    (["--timeout", "-1"], "bulkhead: --timeout"),
])
def test_bad_flags_are_refused_in_one_line(args: list[str], message: str) -> None:
    done = bulkhead(*args)
    assert done.returncode == 1
    assert done.stderr.startswith(message), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_published_external_address_is_the_default_and_checked(tmp_path: Path) -> None:
    """A lab with a world publishes its web server's address (EXTERNAL_IP_FILE): the default
    --external-ip, refused in one line naming the file when it is not an address."""
    (tmp_path / EXTERNAL_IP_FILE).write_text("not-an-address\n")
    env = {**os.environ, "BULKHEAD_STATE_DIR": str(tmp_path)}
    done = subprocess.run([str(BIN / "bulkhead"), "--server", "127.0.0.1:1", "connectivity",
                           "test"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"bulkhead: --external-ip (default from {tmp_path / EXTERNAL_IP_FILE}): "
        "not an IPv4 address: 'not-an-address'")
