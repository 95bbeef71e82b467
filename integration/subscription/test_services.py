"""Services reach every agent with their backends, through snapshots, deltas and a resume on
another replica, with a real etcd and control-plane replicas as separate processes."""

from __future__ import annotations

import pytest

from bulkhead.v1 import service_pb2, service_pb2_grpc

from .cluster import Cluster
from .conftest import Agent, eventually, fresh_content

pytestmark = pytest.mark.timeout(120)
NS = "k8s:io.kubernetes.pod.namespace=default"
SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: dns, port: 53, protocol: UDP}
"""


async def test_every_agent_holds_every_service_with_its_backends(
        cluster: Cluster, agents: list[Agent]) -> None:
    a = await cluster.start_replica("a")
    b = await cluster.start_replica("b")
    services = service_pb2_grpc.ServiceServiceStub(cluster.channel(b.address))
    await services.Apply(service_pb2.ApplyServicesRequest(yaml=SERVICE), timeout=10)
    for i in range(3):
        agents.append(await Agent(f"node-{i}", [a.address, b.address], f"192.168.9.{i + 1}",
                                  first=0).start())

    def backends(agent: Agent) -> set[tuple[str, int, str]] | None:
        svc = agent.client.state.services.get("default/web")
        return None if svc is None else {(b.ip, b.port, b.protocol) for b in svc.backends}

    async def everywhere(expected: set[tuple[str, int, str]] | None) -> bool:
        return all(backends(x) == expected for x in agents)

    await eventually(lambda: everywhere(set()))   # from the snapshot, no backends yet
    svc = agents[0].client.state.services["default/web"]
    assert svc.client_ip_affinity and svc.cluster_ip and svc.id == 1
    web0 = await cluster.create_endpoint(a.address, "node-0", "web-0", ["k8s:app=web", NS])
    web2 = await cluster.create_endpoint(b.address, "node-2", "web-2", ["k8s:app=web", NS])
    await cluster.create_endpoint(b.address, "node-1", "db", ["k8s:app=db", NS])
    both = {(web0.ip, 8080, "TCP"), (web0.ip, 53, "UDP"), (web2.ip, 8080, "TCP"),
            (web2.ip, 53, "UDP")}
    await eventually(lambda: everywhere(both))
    # The agents' replica dies: they resume on the other with what they missed.
    cluster.kill("a")
    await cluster.delete_endpoint(b.address, "web-0")
    await eventually(lambda: everywhere({(web2.ip, 8080, "TCP"), (web2.ip, 53, "UDP")}))
    fresh = await fresh_content(b.address, "node-1", "192.168.9.2")
    assert all(x.client.state.content()["services"] == fresh["services"] for x in agents)
    await services.Delete(service_pb2.DeleteServiceRequest(
        service=service_pb2.ServiceRef(namespace="default", name="web")), timeout=10)
    await eventually(lambda: everywhere(None))
