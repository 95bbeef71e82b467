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

from controlplane.store.embedded import free_port

IMAGE = os.environ.get("BULKHEAD_ETCD_IMAGE", "bulkhead/etcd:local")


def _member(name: str, cluster: str, token: str, network: Network | None,
            extra: str = "") -> DockerContainer:
    # A fixed host port: a member stopped and started again (the fault suite) keeps its
    # client address, as a real member keeps its URL.
    container = (DockerContainer(IMAGE)
                 .with_name(name)
                 .with_bind_ports("2379", free_port())
                 .with_kwargs(labels={"bulkhead.test": token})
                 .with_command(
                     f"--name {name} --data-dir /tmp/etcd "
                     f"--listen-client-urls http://0.0.0.0:2379 "
                     f"--advertise-client-urls http://{name}:2379 "
                     f"--listen-peer-urls http://0.0.0.0:2380 "
                     f"--initial-advertise-peer-urls http://{name}:2380 "
                     f"--initial-cluster {cluster} --initial-cluster-token {token} "
                     f"--initial-cluster-state new {extra}"))
    if network is not None:
        container = container.with_network(network).with_network_aliases(name)
    return container


def _endpoint(container: DockerContainer) -> str:
    return f"127.0.0.1:{container.ports['2379']}"


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
    network: Network | None = None

    def stop_member(self, index: int) -> None:
        self.containers[index].get_wrapped_container().stop(timeout=2)

    def kill_member(self, index: int) -> None:
        """SIGKILL: no clean shutdown, as a crashed member."""
        self.containers[index].get_wrapped_container().kill()

    def start_member(self, index: int) -> None:
        """Starts a stopped or killed member again on its data and addresses."""
        self.containers[index].get_wrapped_container().start()

    def partition(self, index: int) -> None:
        """Cuts the member off the cluster's network: from its peers and from clients."""
        assert self.network is not None, "a single member has no peers to lose"
        self.network._unwrap_network.disconnect(self.containers[index].get_wrapped_container())

    def heal(self, index: int) -> None:
        assert self.network is not None
        container = self.containers[index].get_wrapped_container()
        self.network.connect(container.id, network_aliases=[container.name])


@contextlib.contextmanager
def etcd_cluster(members: int = 1, extra: str = "") -> Iterator[EtcdCluster]:
    """A fresh etcd cluster of `members`, removed on exit; `extra`: more etcd flags (the
    fault suite's space quota)."""
    token = f"bh{uuid.uuid4().hex[:8]}"
    names = [f"{token}-etcd{i}" for i in range(members)]
    cluster = ",".join(f"{n}=http://{n}:2380" for n in names)
    with contextlib.ExitStack() as stack:
        network = stack.enter_context(Network()) if members > 1 else None
        containers = [stack.enter_context(_member(n, cluster if network else
                                                  f"{n}=http://{n}:2380", token, network,
                                                  extra))
                      for n in names]
        endpoints = [_endpoint(c) for c in containers]
        _wait_healthy(endpoints)
        yield EtcdCluster(endpoints, containers, network)
