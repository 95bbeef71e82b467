"""What the console asks the control plane, through the CLI's own connection code (server
discovery and credentials of cli/connect.py), answered as plain JSON values.

A failed call becomes `ApiError` with the server's words and its field violations (what the
editor shows at their paths); the HTTP layer (server.py) turns it into a JSON error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc

from bulkhead import tls
from bulkhead.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    clustermesh_pb2,
    clustermesh_pb2_grpc,
    flow_pb2,
    identity_pb2,
    identity_pb2_grpc,
    observer_pb2,
    observer_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    policyimpact_pb2,
    policyimpact_pb2_grpc,
    service_pb2,
    service_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
)

from ..connect import credentials, server_address
from ..output import to_dict
from . import flowmap, verdicts, yamlpaths
from .errors import ApiError, refused
from .flows import FlowCache, flow_json

TIMEOUT = 30.0


class Backend:
    def __init__(self, server: str | None = None, tls_ca: Path | None = None,
                 tls_cert: Path | None = None, tls_key: Path | None = None,
                 insecure: bool = False) -> None:
        self.address = server_address(server)
        self.channel = tls.aio_channel(self.address,
                                       credentials(tls_ca, tls_cert, tls_key, insecure),
                                       options=[("grpc.enable_retries", 1)])
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)
        self.observer = observer_pb2_grpc.ObserverServiceStub(self.channel)
        self.policy = policy_pb2_grpc.PolicyServiceStub(self.channel)
        self.impact_stub = policyimpact_pb2_grpc.PolicyImpactServiceStub(self.channel)
        self.identity = identity_pb2_grpc.IdentityServiceStub(self.channel)
        self.services = service_pb2_grpc.ServiceServiceStub(self.channel)
        self.subscriptions = subscription_pb2_grpc.SubscriptionAdminServiceStub(self.channel)
        self.mesh = clustermesh_pb2_grpc.ClusterMeshServiceStub(self.channel)
        self.flows = FlowCache(self.observer)

    async def close(self) -> None:
        await self.flows.stop()
        await self.channel.close()

    async def call(self, method: Any, request: Any, timeout: float = TIMEOUT) -> Any:
        try:
            return await method(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            raise refused(exc, self.address) from None

    async def _pages(self, method: Any, request: Any, field: str) -> list[Any]:
        items: list[Any] = []
        while True:
            response = await self.call(method, request)
            items.extend(getattr(response, field))
            if not response.next_page_token:
                return items
            request.page_token = response.next_page_token

    # -- flows and the map --------------------------------------------------------------------
    async def stream_flows(self, request: flow_pb2.GetFlowsRequest
                           ) -> AsyncIterator[dict[str, Any]]:
        try:
            async for flow in self.observer.GetFlows(request):
                yield flow_json(flow)
        except grpc.aio.AioRpcError as exc:
            raise refused(exc, self.address) from None

    async def endpoints(self) -> list[dict[str, Any]]:
        found = await self._pages(self.admin.ListEndpoints, admin_pb2.ListEndpointsRequest(),
                                  "endpoints")
        return [to_dict(e) for e in found]

    async def service_map(self, namespace: str = "") -> dict[str, Any]:
        built = flowmap.build_map(list(self.flows.flows), await self.endpoints(), namespace)
        built["flows_error"] = self.flows.error
        return built

    async def explain(self, flows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rule that decides each flow under the stored policies (`policy trace` of its
        labels, port and HTTP request, on the side that saw it), or why it cannot be traced."""
        answers: dict[tuple[Any, ...], dict[str, Any]] = {}
        out = []
        for flow in flows:
            connection = verdicts.connection_of(flow)
            if connection is None:
                out.append({"rule": "", "verdict": "", "error": "not traceable"})
                continue
            key = verdicts.key_of(connection)
            if key not in answers:
                try:
                    traced = await self.call(self.policy.Trace, verdicts.trace_request(connection))
                    answers[key] = verdicts.decided(to_dict(traced), connection.side)
                except ApiError as exc:
                    answers[key] = {"rule": "", "verdict": "", "error": exc.message}
            out.append(verdicts.against(answers[key], flow["verdict"]))
        return out

    # -- policies -----------------------------------------------------------------------------
    async def policies(self) -> list[dict[str, Any]]:
        found = await self.call(self.policy.List, policy_pb2.ListPoliciesRequest())
        return [to_dict(p) for p in found.policies]

    async def policy_yaml(self, namespace: str, name: str) -> dict[str, Any]:
        info = await self.call(self.policy.Get, policy_pb2.GetPolicyRequest(
            policy=policy_pb2.PolicyRef(namespace=namespace, name=name)))
        return to_dict(info)

    async def validate(self, text: str) -> dict[str, Any]:
        """Every problem of the edited YAML at its path (and line), as Apply would report
        it; nothing stored."""
        try:
            found = await self.call(self.impact_stub.TraceProposed,
                                    policyimpact_pb2.TraceProposedRequest(yaml=text))
        except ApiError as exc:
            if exc.status != 400:
                raise
            problems = exc.problems or [{"field": "yaml", "description": exc.message}]
            return {"ok": False, "message": exc.message,
                    "problems": [{**p, "line": yamlpaths.line_of(text, p["field"])}
                                 for p in problems]}
        return {"ok": True, "problems": [],
                "policies": [{"namespace": p.namespace, "name": p.name, "kind": p.kind,
                              "rules": p.rules} for p in found.policies]}

    async def whatif(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A connection between pods (`ns/name`) or label sets, traced against the stored
        policies and, with `yaml`/`remove`, against the edited set."""
        src = await self._labels(body.get("src", ""), "src")
        dst = await self._labels(body.get("dst", ""), "dst")
        port, _, proto = str(body.get("port", "")).partition("/")
        if not port.isdigit():
            raise ApiError("port: expected PORT/PROTO, e.g. 80/TCP",
                           [{"field": "port", "description": "expected PORT/PROTO"}])
        connection = policyimpact_pb2.ProposedConnection(
            src_labels=src, dst_labels=dst, dport=int(port), protocol=(proto or "TCP").upper(),
            http_method=body.get("method", ""), http_path=body.get("path", ""))
        found = await self.call(self.impact_stub.TraceProposed,
                                policyimpact_pb2.TraceProposedRequest(
                                    yaml=body.get("yaml", ""),
                                    remove=_refs(body.get("remove", ())),
                                    connections=[connection]))
        result = found.results[0]
        edited = bool(body.get("yaml", "").strip() or body.get("remove"))
        return {"current": verdicts.trace_json(to_dict(result.current)),
                "proposed": verdicts.trace_json(to_dict(result.proposed)) if edited else None,
                "src_labels": src, "dst_labels": dst}

    async def _labels(self, text: str, field: str) -> list[str]:
        """Labels of `text`: a pod `ns/name` (its identity's labels) or `k:v,...` labels."""
        text = text.strip()
        if "/" in text and "=" not in text:
            namespace, _, name = text.partition("/")
            for ep in await self.endpoints():
                if (ep["namespace"], ep["name"]) == (namespace, name):
                    identity = await self.call(self.identity.Get,
                                               identity_pb2.GetIdentityRequest(id=ep["identity"]))
                    return list(identity.labels)
            raise ApiError(f"{field}: no pod {text}",
                           [{"field": field, "description": f"no pod {text}"}])
        labels = [part.strip() for part in text.split(",") if part.strip()]
        if not labels:
            raise ApiError(f"{field}: give a pod NS/NAME or labels",
                           [{"field": field, "description": "give a pod NS/NAME or labels"}])
        return labels

    async def impact(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The recent flows whose verdict the edited set (`yaml` applied, `remove` deleted)
        would change, replayed through it: one row per distinct connection."""
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        connections: list[policyimpact_pb2.ProposedConnection] = []
        for flow in list(self.flows.flows):
            connection = verdicts.connection_of(flow)
            if connection is None:
                continue
            key = verdicts.key_of(connection)
            if key not in rows:
                if len(connections) == 1024:
                    continue
                rows[key] = {"flows": [], "side": connection.side,
                             "source": flowmap.peer_group(flow["source"])["id"],
                             "destination": flowmap.peer_group(flow["destination"])["id"],
                             "port": f"{connection.dport}/{connection.protocol}",
                             "request": f"{connection.http_method} {connection.http_path}"
                             if connection.http_method else ""}
                connections.append(connection)
            rows[key]["flows"].insert(0, flow)
        found = await self.call(self.impact_stub.TraceProposed,
                                policyimpact_pb2.TraceProposedRequest(
                                    yaml=body.get("yaml", ""), remove=_refs(body.get("remove", ())),
                                    connections=connections))
        changed = []
        for row, result in zip(rows.values(), found.results, strict=True):
            if not result.changed:
                continue
            current, proposed = to_dict(result.current), to_dict(result.proposed)
            changed.append({**row, "count": len(row["flows"]), "flows": row["flows"][:20],
                            "current": verdicts.decided(current, row["side"]),
                            "proposed": verdicts.decided(proposed, row["side"])})
        return {"flows_replayed": sum(len(r["flows"]) for r in rows.values()),
                "connections": len(connections), "changed": changed}

    async def apply(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Applies the edited YAML and deletes `remove`, then waits as `policy apply --wait`
        does: every node hosting an affected identity acked the change's revision."""
        text = body.get("yaml", "")
        revision, affected, lines = 0, set(), []
        if text.strip():
            applied = await self.call(self.policy.Apply, policy_pb2.ApplyPoliciesRequest(
                yaml=text))
            revision, affected = applied.revision, set(applied.affected_identities)
            lines += [f"{a.policy.kind.lower()} {_name(a.policy)} {a.action}"
                      for a in applied.policies]
        for ref in _refs(body.get("remove", ())):
            deleted = await self.call(self.policy.Delete,
                                      policy_pb2.DeletePolicyRequest(policy=ref))
            revision = max(revision, deleted.revision)
            affected |= set(deleted.affected_identities)
            lines.append(f"policy {_name(ref)} deleted")
        timeout = float(body.get("timeout", 30))
        waited = None
        if affected:
            waited = await self.call(self.subscriptions.WaitForRevision,
                                     subscription_pb2.WaitForRevisionRequest(
                                         revision=revision, identities=sorted(affected),
                                         timeout_seconds=timeout), timeout=timeout + 10)
        subs = await self.call(self.subscriptions.ListSubscriptions,
                               subscription_pb2.ListSubscriptionsRequest())
        concerned = set(waited.nodes) if waited is not None else set()
        pending = {p.name for p in waited.pending} if waited is not None else set()
        covered = {c.name for c in waited.covered} if waited is not None else set()
        nodes = [{"name": s.name, "acked_revision": s.acked_revision, "connected": s.connected,
                  "concerned": s.name in concerned,
                  "state": ("pending" if s.name in pending else "covered" if s.name in covered
                            else "applied" if s.name in concerned else "not concerned")}
                 for s in subs.subscriptions]
        return {"revision": revision, "actions": lines, "affected_identities": sorted(affected),
                "converged": waited is None or waited.converged, "nodes": nodes}

    # -- the cluster --------------------------------------------------------------------------
    async def cluster(self) -> dict[str, Any]:
        status = await self.call(self.admin.Status, admin_pb2.StatusRequest())
        nodes = await self._pages(self.admin.ListNodes, admin_pb2.ListNodesRequest(), "nodes")
        subs = await self.call(self.subscriptions.ListSubscriptions,
                               subscription_pb2.ListSubscriptionsRequest())
        by_name = {s.name: to_dict(s) for s in subs.subscriptions}
        identities = await self._pages(self.admin.ListIdentities,
                                       admin_pb2.ListIdentitiesRequest(), "identities")
        services = await self.call(self.services.List, service_pb2.ListServicesRequest())
        mesh = await self.call(self.mesh.Status, clustermesh_pb2.ClusterMeshStatusRequest())
        try:
            flows: dict[str, Any] = to_dict(await self.call(
                self.observer.ObserverStatus, observer_pb2.ObserverStatusRequest(), 10))
        except ApiError as exc:
            flows = {"error": exc.message}
        return {"status": to_dict(status), "revision": subs.revision,
                "nodes": [{**to_dict(n), "subscription": by_name.get(n.name)} for n in nodes],
                "identities": [to_dict(i) for i in identities],
                "services": [to_dict(s) for s in services.services],
                "clustermesh": to_dict(mesh), "flows": flows}


def _name(ref: Any) -> str:
    return f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name


def _refs(names: Iterable[str]) -> list[policy_pb2.PolicyRef]:
    """`ns/name` (a bare name: clusterwide) as PolicyRefs."""
    out = []
    for text in names:
        namespace, sep, name = str(text).rpartition("/")
        out.append(policy_pb2.PolicyRef(namespace=namespace if sep else "", name=name))
    return out
