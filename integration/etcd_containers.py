"""etcd in containers for integration tests (testcontainers), from the locally built image.

No registry is reachable here, so `make setup` builds `bulkhead/etcd:local` from Debian's etcd
binary; set BULKHEAD_ETCD_IMAGE to an official etcd image where a registry is reachable.
The reaper container cannot be pulled either, so it is disabled and every test stops its own
containers (context managers below).
"""

from __future__ import annotations

import contextlib
import os
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

IMAGE = os.environ.get("BULKHEAD_ETCD_IMAGE", "bulkhead/etcd:local")


def _member(name: str, cluster: str, token: str, network: Network | None) -> DockerContainer:
    container = (DockerContainer(IMAGE)
                 .with_name(name)
                 .with_exposed_ports(2379)
                 .with_kwargs(labels={"bulkhead.test": token})
                 .with_command(
                     f"--name {name} --data-dir /tmp/etcd "
                     f"--listen-client-urls http://0.0.0.0:2379 "
                     f"--advertise-client-urls http://{name}:2379 "
                     f"--listen-peer-urls http://0.0.0.0:2380 "
                     f"--initial-advertise-peer-urls http://{name}:2380 "
                     f"--initial-cluster {cluster} --initial-cluster-token {token} "
                     f"--initial-cluster-state new"))
    if network is not None:
        container = container.with_network(network).with_network_aliases(name)
    return container


def _endpoint(container: DockerContainer) -> str:
    return f"{container.get_container_host_ip()}:{container.get_exposed_port(2379)}"


def _wait_healthy(endpoints: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    pending = list(endpoints)
    while pending:
        endpoint = pending[0]
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://{endpoint}/health", timeout=1) as response:
                if b'"true"' in response.read():
                    pending.pop(0)
                    continue
        if time.monotonic() > deadline:
            raise RuntimeError(f"etcd at {endpoint} did not become healthy")
        time.sleep(0.2)


@dataclass
class EtcdCluster:
    endpoints: list[str]  # host:port of each member's client port, in member order
    containers: list[DockerContainer]

    def stop_member(self, index: int) -> None:
        self.containers[index].get_wrapped_container().stop(timeout=2)


@contextlib.contextmanager
def etcd_cluster(members: int = 1) -> Iterator[EtcdCluster]:
    """A fresh etcd cluster of `members`, removed on exit."""
    token = f"bh{uuid.uuid4().hex[:8]}"
    names = [f"{token}-etcd{i}" for i in range(members)]
    cluster = ",".join(f"{n}=http://{n}:2380" for n in names)
    with contextlib.ExitStack() as stack:
        network = stack.enter_context(Network()) if members > 1 else None
        containers = [stack.enter_context(_member(n, cluster if network else
                                                  f"{n}=http://{n}:2380", token, network))
                      for n in names]
        endpoints = [_endpoint(c) for c in containers]
        _wait_healthy(endpoints)
        yield EtcdCluster(endpoints, containers)
