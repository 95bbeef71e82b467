"""`bulkhead connectivity test`: cilium-cli's connectivity test for any Bulkhead cluster.

The agents create the test pods (namespace bulkhead-test) on two nodes and run the probes;
this command applies each test's policies, checks every probe's verdict and the flow the
observer recorded for it, and removes everything afterwards, also after Ctrl-C (a run that
was killed leaves what the next run, or the agent's restart, removes). One run at a time per
cluster: a run holds the control plane's connectivity-test lock until it ends, and a second
run is refused naming the holder.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import os
import re
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

import grpc

from bulkhead.defaults import DEFAULT_STATE_DIR, EXTERNAL_IP_FILE
from bulkhead.rpcerror import describe

from .. import argtypes
from ..connectivity.report import as_document, failure_lines, summary, test_line
from ..connectivity.runner import Options, Runner, SetupError, TestResult
from ..connectivity.scenarios import SCENARIOS, Scenario
from ..output import emit_json, output_flag


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "connectivity", help="test the cluster's connectivity and policy enforcement",
        description=__doc__)
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    t = verbs.add_parser("test", help="create test pods, apply test policies one scenario at "
                                      "a time, probe and check verdicts and flows")
    t.add_argument("--test", action="append", default=[], metavar="PATTERN",
                   help="run only tests whose name matches this regular expression "
                        "(repeatable; a leading ! excludes)")
    t.add_argument("--node", action="append", default=[], metavar="NODE",
                   help="the two nodes to use, node A (clients, echo-same) first "
                        "(default: the first two nodes with a reachable agent)")
    t.add_argument("--external-ip", default=None, metavar="IP",
                   help="an address outside the cluster that answers ping (default: the "
                        "web server of a lab's world, if the lab has one; the world and CIDR "
                        "tests are skipped without it; '' skips them)")
    t.add_argument("--timeout", type=argtypes.seconds("--timeout"), default=2.0,
                   help="seconds each probe waits for an answer (default 2)")
    t.add_argument("--list", action="store_true", help="list the tests and exit")
    output_flag(t)
    t.set_defaults(run=run_test)


def selected(patterns: list[str]) -> list[Scenario]:
    include = [p for p in patterns if not p.startswith("!")]
    exclude = [p[1:] for p in patterns if p.startswith("!")]
    try:
        return [s for s in SCENARIOS
                if (not include or any(re.search(p, s.name) for p in include))
                and not any(re.search(p, s.name) for p in exclude)]
    except re.error as exc:
        argtypes.bad_value("--test", f"not a regular expression: {exc}")


def published_external_ip() -> str:
    """The address a lab with a world published for the world and CIDR tests ('' if none)."""
    try:
        return (DEFAULT_STATE_DIR / EXTERNAL_IP_FILE).read_text().strip()
    except OSError:
        return ""


def run_test(ctx: Any) -> int:
    args = ctx.args
    scenarios = selected(args.test)
    if args.list:
        for s in scenarios:
            print(f"{s.name:32} {s.description}")
        return 0
    if not scenarios:
        argtypes.bad_value("--test", "no test matches")
    flag = "--external-ip"
    if args.external_ip is None:
        args.external_ip = published_external_ip()
        flag = f"--external-ip (default from {DEFAULT_STATE_DIR / EXTERNAL_IP_FILE})"
    if args.external_ip:
        try:
            ipaddress.IPv4Address(args.external_ip)
        except ValueError:
            argtypes.bad_value(flag, f"not an IPv4 address: {args.external_ip!r}")
    if len(args.node) not in (0, 2):
        argtypes.bad_value("--node", "give it twice (node A, node B) or not at all")

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    runner = Runner(ctx.stub, Options(args.node, args.external_ip, args.timeout), progress)
    # One run at a time per cluster: refused (FAILED_PRECONDITION, exit 1) while another holds
    # the lock; released when this run ends, however it ends.
    runner.hold_lock(lock_holder())
    try:
        return _run(ctx, runner, scenarios, progress)
    finally:
        runner.release_lock()


def lock_holder() -> str:
    """Who runs this test, as a refused second run is told: `user@host pid N`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def _run(ctx: Any, runner: Runner, scenarios: list[Scenario],
         progress: Callable[[str], None]) -> int:
    args = ctx.args
    results: list[TestResult] = []
    try:
        runner.choose_nodes()
    except SetupError as exc:  # nothing created yet: nothing to clean up
        print(f"bulkhead: connectivity test: {exc}", file=sys.stderr)
        return 1
    try:
        left = runner.cleanup()
        if left:
            progress(f"removed leftovers of an earlier run: {', '.join(left)}")
        progress(f"test pods on nodes {runner.nodes['a']} (A) and {runner.nodes['b']} (B)")
        if args.external_ip:
            progress(f"outside the cluster: {args.external_ip} (world and CIDR tests)")
        runner.setup()
        progress(f"running {len(scenarios)} tests")
        for number, scenario in enumerate(scenarios, start=1):
            runner.check_lock()
            progress(f"[=] Test [{scenario.name}] [{number}/{len(scenarios)}]")
            result = runner.run_test(scenario, number)
            results.append(result)
            if not ctx.json:
                print(test_line(result, len(scenarios)), flush=True)
                for action in result.actions:
                    if not action.passed:
                        print("\n".join(failure_lines(action)), flush=True)
    except SetupError as exc:
        print(f"bulkhead: connectivity test: {exc}", file=sys.stderr)
        return 1
    finally:
        _teardown(runner, progress)
    if ctx.json:
        emit_json(as_document(results, runner.nodes, args.external_ip))
    else:
        print(summary(results))
    return 0 if all(r.status != "failed" for r in results) else 1


def _teardown(runner: Runner, progress: Any) -> None:
    """Removes what the run created; a second Ctrl-C does not cut it short."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        progress("cleaning up: test policies, service and pods in namespace bulkhead-test")
        runner.cleanup()
    except (grpc.RpcError, SetupError) as exc:
        why = describe(exc) if isinstance(exc, grpc.RpcError) else str(exc)
        progress(f"clean-up incomplete ({why}); the next run removes the rest")
    finally:
        signal.signal(signal.SIGINT, previous)
