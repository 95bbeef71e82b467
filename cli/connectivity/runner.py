"""Runs the connectivity tests against a cluster through the control plane: test pods and
probes (ConnectivityService, relayed to the agents), the scenarios' policies and the echo
service (PolicyService, ServiceService, waited for with WaitForRevision), and the flows each
probe left (ObserverService). Everything it creates lives in the namespace bulkhead-test and
is removed before the run (leftovers of an interrupted one) and after it, while the run holds
the cluster's connectivity-test lock (one run at a time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from bulkhead.rpcerror import describe
from bulkhead.v1 import (
    connectivity_pb2,
    connectivity_pb2_grpc,
    flow_pb2,
    observer_pb2,
    observer_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    service_pb2,
    service_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
)

from .scenarios import (
    ALLOW,
    DROP_REASONS,
    L7_DENY,
    NAMESPACE,
    PODS,
    SERVICE,
    SERVICE_YAML,
    Action,
    Scenario,
    policy_yaml,
)

FLOW_WAIT = 5.0
"""Longest wait for the flow of a probe to reach the observer (agents poll their ring every
50 ms; the relay reads every node)."""
CONVERGE_TIMEOUT = 30.0


class SetupError(RuntimeError):
    """The run cannot start (fewer than two reachable nodes, a test pod not created)."""


@dataclass
class ActionResult:
    action: Action
    source_ip: str = ""
    target_ip: str = ""
    seen: str = ""
    detail: str = ""
    problems: list[str] = field(default_factory=list)
    flows: list[flow_pb2.Flow] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass
class TestResult:
    scenario: Scenario
    number: int
    status: str = "passed"      # passed | failed | skipped
    reason: str = ""
    actions: list[ActionResult] = field(default_factory=list)


@dataclass
class Options:
    nodes: Sequence[str] = ()
    external_ip: str = ""
    timeout: float = 2.0


def _denial(reason: str) -> str:
    """What a drop reason says the probe met: a deny rule, default deny, or another drop."""
    for name, text in DROP_REASONS.items():
        if text == reason:
            return name
    return f"dropped ({reason})"


class Runner:
    def __init__(self, stub: Callable[[Any], Any], options: Options,
                 progress: Callable[[str], None]) -> None:
        self.connectivity = stub(connectivity_pb2_grpc.ConnectivityServiceStub)
        self.observer = stub(observer_pb2_grpc.ObserverServiceStub)
        self.policies = stub(policy_pb2_grpc.PolicyServiceStub)
        self.services = stub(service_pb2_grpc.ServiceServiceStub)
        self.subscriptions = stub(subscription_pb2_grpc.SubscriptionAdminServiceStub)
        self.options = options
        self.say = progress
        self.nodes: dict[str, str] = {}          # "a"/"b" -> node name
        self.pods: dict[str, connectivity_pb2.TestPod] = {}
        self.service_ip = ""
        self.service_problem = ""
        self._lock: Any = None   # the open HoldTestLock call

    # -- the cluster's test lock ---------------------------------------------------------------
    def hold_lock(self, holder: str) -> connectivity_pb2.TestLock:
        """Takes the cluster's connectivity-test lock, held until release_lock (or this process
        goes away). grpc.RpcError FAILED_PRECONDITION, naming the holder, while another run
        holds it."""
        self._lock = self.connectivity.HoldTestLock(
            connectivity_pb2.HoldTestLockRequest(holder=holder))
        try:
            return next(self._lock)
        except grpc.RpcError:
            self._lock = None
            raise

    def check_lock(self) -> None:
        """SetupError when the lock's call ended under the run (its lease lost, its replica
        gone): another run may take it now, so this one stops."""
        if self._lock is not None and not self._lock.is_active():
            raise SetupError("lost the cluster's connectivity-test lock "
                             f"({describe(self._lock)}); stopping")

    def release_lock(self) -> None:
        if self._lock is not None:
            self._lock.cancel()
            self._lock = None

    # -- set-up and clean-up ------------------------------------------------------------------
    def choose_nodes(self) -> None:
        status = self.observer.ObserverStatus(observer_pb2.ObserverStatusRequest(), timeout=30)
        reachable = sorted(n.node for n in status.nodes if n.reachable)
        wanted = list(self.options.nodes) or reachable[:2]
        missing = [n for n in wanted if n not in reachable]
        if missing:
            raise SetupError(f"no reachable agent on node {', '.join(missing)} (reachable: "
                             f"{', '.join(reachable) or 'none'})")
        if len(set(wanted)) < 2:
            raise SetupError("the connectivity test needs two nodes with a reachable agent; "
                             f"found {', '.join(reachable) or 'none'}")
        self.nodes = {"a": wanted[0], "b": wanted[1]}

    def cleanup(self) -> list[str]:
        """Removes everything in the namespace bulkhead-test: policies, services, test pods
        on every node. Returns what it removed."""
        removed: list[str] = []
        revision = 0
        listed = self.policies.List(policy_pb2.ListPoliciesRequest(namespace=NAMESPACE),
                                    timeout=30)
        for info in listed.policies:
            done = self.policies.Delete(policy_pb2.DeletePolicyRequest(policy=policy_pb2.PolicyRef(
                kind=info.kind, namespace=info.namespace, name=info.name)), timeout=30)
            revision = max(revision, done.revision)
            removed.append(f"policy {info.namespace}/{info.name}")
        try:
            services = self.services.List(service_pb2.ListServicesRequest(namespace=NAMESPACE),
                                          timeout=30).services
        except grpc.RpcError:
            services = []
        for svc in services:
            self.services.Delete(service_pb2.DeleteServiceRequest(
                service=service_pb2.ServiceRef(namespace=svc.namespace, name=svc.name)),
                timeout=30)
            removed.append(f"service {svc.namespace}/{svc.name}")
        if revision:
            self._converge(revision)
        cleaned = self.connectivity.CleanupTestPods(
            connectivity_pb2.CleanupTestPodsRequest(), timeout=120)
        for node in cleaned.nodes:
            removed += [f"pod {node.node}/{name}" for name in node.removed]
            if node.error:
                self.say(f"node {node.node}: test pods not cleaned up: {node.error}")
        return removed

    def setup(self) -> None:
        for pod in PODS:
            node = self.nodes[pod.node]
            self.say(f"creating test pod {NAMESPACE}/{pod.name} on node {node}")
            try:
                self.pods[pod.name] = self.connectivity.CreateTestPod(
                    connectivity_pb2.CreateTestPodRequest(
                        node=node, name=pod.name, labels=pod.labels, serve_ports=pod.serve),
                    timeout=120)
            except grpc.RpcError as exc:
                raise SetupError(f"test pod {pod.name} on node {node}: "
                                 f"{describe(exc)}") from None
        try:
            applied = self.services.Apply(service_pb2.ApplyServicesRequest(yaml=SERVICE_YAML),
                                          timeout=30)
        except grpc.RpcError as exc:
            self.service_problem = f"service not applied: {describe(exc)}"
            return
        self._converge(applied.revision)
        svc = self.services.Get(service_pb2.GetServiceRequest(
            service=service_pb2.ServiceRef(namespace=NAMESPACE, name=SERVICE)), timeout=30)
        self.service_ip = svc.cluster_ip

    def _converge(self, revision: int, identities: Sequence[int] = ()) -> None:
        result = self.subscriptions.WaitForRevision(subscription_pb2.WaitForRevisionRequest(
            revision=revision, identities=list(identities), timeout_seconds=CONVERGE_TIMEOUT),
            timeout=CONVERGE_TIMEOUT + 10)
        if not result.converged:
            late = ", ".join(p.name for p in result.pending)
            raise SetupError(f"revision {revision} not applied on {late} within "
                             f"{CONVERGE_TIMEOUT:g} s")

    # -- tests --------------------------------------------------------------------------------
    def skip_reason(self, scenario: Scenario) -> str:
        if "external" in scenario.needs and not self.options.external_ip:
            return "needs --external-ip (an address outside the cluster that answers ping)"
        if "service" in scenario.needs and not self.service_ip:
            return self.service_problem or "the echo service has no ClusterIP"
        return ""

    def run_test(self, scenario: Scenario, number: int) -> TestResult:
        result = TestResult(scenario, number)
        reason = self.skip_reason(scenario)
        if reason:
            result.status, result.reason = "skipped", reason
            return result
        text = policy_yaml(scenario, self.options.external_ip)
        try:
            if text:
                applied = self.policies.Apply(policy_pb2.ApplyPoliciesRequest(yaml=text),
                                              timeout=30)
                self._converge(applied.revision, list(applied.affected_identities))
            for action in scenario.actions:
                done = self.run_action(action)
                result.actions.append(done)
                self.say(f"  {'.' if done.passed else 'x'} {action.name}: {done.seen}")
        finally:
            self._remove_policies(scenario)
        if any(not a.passed for a in result.actions):
            result.status = "failed"
        return result

    def _remove_policies(self, scenario: Scenario) -> None:
        revision = 0
        for i in range(len(scenario.policies)):
            try:
                done = self.policies.Delete(policy_pb2.DeletePolicyRequest(
                    policy=policy_pb2.PolicyRef(kind="CiliumNetworkPolicy", namespace=NAMESPACE,
                                                name=f"{scenario.name}-{i}")), timeout=30)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                continue
            revision = max(revision, done.revision)
        if revision:
            self._converge(revision)

    def _address(self, target: str) -> str:
        if target == "service":
            return self.service_ip
        if target == "external":
            return self.options.external_ip
        if target.startswith("node-"):
            return self.pods["client"].node_ip if target == "node-a" else \
                self.pods["echo-other"].node_ip
        return self.pods[target].ipv4

    def run_action(self, action: Action) -> ActionResult:
        out = ActionResult(action)
        host = action.source.startswith("host-")
        node = self.nodes[action.source[5:]] if host else self.pods[action.source].node
        out.target_ip = self._address(action.target)
        out.source_ip = "" if host else self.pods[action.source].ipv4
        try:
            probe = self.connectivity.RunProbe(connectivity_pb2.ProbeRequest(
                node=node, from_pod="" if host else action.source, kind=action.kind,
                ip=out.target_ip, port=action.port, method=action.method, path=action.path,
                timeout_seconds=self.options.timeout), timeout=self.options.timeout + 60)
        except grpc.RpcError as exc:
            out.seen = "probe failed"
            out.problems.append(f"the probe could not run: {describe(exc)}")
            return out
        out.detail = probe.detail
        if probe.ok:
            out.seen = L7_DENY if probe.http_code == 403 else ALLOW
        else:
            out.seen = f"no answer ({probe.detail})"
        self._check_flows(out, probe.started_ns)
        reasons = [f.drop_reason for f in out.flows if f.verdict == "DROPPED"]
        if not probe.ok and reasons:
            wanted = DROP_REASONS.get(action.expect, "")
            out.seen = _denial(wanted if wanted in reasons else reasons[-1])
        if out.seen != action.expect:
            out.problems.insert(0, f"expected {action.expect}, seen {out.seen}")
        return out

    def _flow_filter(self, out: ActionResult, since_ns: int) -> flow_pb2.FlowFilter:
        action = out.action
        f = flow_pb2.FlowFilter(since_ns=since_ns, from_ip=out.source_ip)
        if action.target == "service":  # flows name the backend's address and port
            f.to_service = f"{NAMESPACE}/{SERVICE}"
        else:
            f.to_ip = out.target_ip
            f.port = action.port
        if action.expect == L7_DENY:
            f.type = "l7"
        elif action.kind == "icmp":
            f.protocol = "ICMP"
        else:
            f.protocol = "UDP" if action.kind == "udp" else "TCP"
        return f

    def _check_flows(self, out: ActionResult, since_ns: int) -> None:
        """Waits (up to FLOW_WAIT) for the flow the expectation implies, then checks it."""
        expect = out.action.expect
        request = flow_pb2.GetFlowsRequest(last=100, filter=self._flow_filter(out, since_ns))
        deadline = time.monotonic() + FLOW_WAIT
        while True:
            flows = list(self.observer.GetFlows(request, timeout=30))
            if expect == ALLOW:
                l3 = [f for f in flows if f.type != "L7"]
                found = any(f.verdict == "FORWARDED" for f in l3)
                problem = "" if found else "no FORWARDED flow recorded"
                dropped = [f for f in l3 if f.verdict == "DROPPED"]
                if found and dropped:
                    problem = f"a DROPPED flow recorded ({dropped[0].drop_reason})"
            elif expect == L7_DENY:
                found = any(f.verdict == "DROPPED" for f in flows)
                problem = "" if found else "no DROPPED L7 flow recorded"
            else:
                reasons = [f.drop_reason for f in flows if f.verdict == "DROPPED"]
                found = DROP_REASONS[expect] in reasons
                problem = "" if found else (
                    f"no DROPPED flow with reason {DROP_REASONS[expect]!r} recorded"
                    + (f" (seen: {', '.join(sorted(set(reasons)))})" if reasons else ""))
            if found or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        out.flows = flows
        if problem:
            out.problems.append(problem)
