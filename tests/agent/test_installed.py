"""A non-editable install runs an agent: the project is `pip install`ed (no -e) from a copy of
the sources into a fresh virtualenv, the copy is deleted, and that venv's `bulkhead-agent
--datapath bpf` compiles the C programs it ships as package data and syncs from that venv's
control plane, in a fresh network namespace.

Offline: the fresh venv sees the system site-packages (bcc) and, through a .pth file placed
after its own site-packages, the third-party libraries of the venv running this test; bulkhead's
own packages come only from the install (checked).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pyroute2 import IPRoute, netns

from bulkhead.v1 import admin_pb2, admin_pb2_grpc, agent_pb2, agent_pb2_grpc
from controlplane.store.embedded import free_port
from integration.etcd_process import EtcdProcess
from tests.datapath.conftest import require_datapath

pytestmark = [pytest.mark.datapath, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
OWN_PACKAGES = ("bulkhead", "bulkhead.reserved", "cli", "controlplane", "nodeagent",
                "integration")
NOT_SHIPPED = (".git", ".venv", "__pycache__", "*.egg-info", "build", ".mypy_cache",
               ".ruff_cache", ".pytest_cache", "tests", "bench", "docs")


@dataclass
class Venv:
    root: Path
    site_packages: Path
    env: dict[str, str]
    """The test's environment without PYTHONPATH (which points at the source tree)."""

    def bin(self, name: str) -> str:
        return str(self.root / "bin" / name)

    def run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, env=self.env, cwd=self.root, capture_output=True,
                              text=True, timeout=timeout)


def third_party_site_packages() -> Path:
    """Where this test's interpreter finds grpc and the other dependencies."""
    return Path(grpc.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def venv() -> Iterator[Venv]:
    require_datapath()
    if shutil.which("etcd") is None:
        pytest.skip("the etcd binary is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="bulkhead-installed-"))
    try:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        root = tmp / "venv"
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", "--without-pip",
                        str(root)], check=True, timeout=120)
        out = subprocess.run([str(root / "bin" / "python"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             env=env, check=True, capture_output=True, text=True, timeout=60)
        site = Path(out.stdout.strip())
        # After the venv's own site-packages, before the system's: pip, setuptools and the
        # runtime dependencies, but no .pth of that venv (its editable bulkhead) is processed.
        (site / "zz_bulkhead_test_deps.pth").write_text(f"{third_party_site_packages()}\n")
        src = tmp / "src"
        shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_SHIPPED))
        v = Venv(root, site, env)
        installed = v.run(v.bin("python"), "-m", "pip", "install", "--no-deps",
                          "--no-build-isolation", "--no-index", "--quiet", str(src), timeout=300)
        assert installed.returncode == 0, installed.stderr
        shutil.rmtree(src)   # nothing may find the sources but through the install
        yield v
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_bulkhead_comes_from_the_install_with_its_c_sources(venv: Venv) -> None:
    script = ("import importlib, json\n"
              "from nodeagent.datapath.loader import bpf_sources\n"
              f"names = {OWN_PACKAGES!r}\n"
              "found = {n: importlib.import_module(n).__file__ for n in names}\n"
              "found['bpf'] = str(bpf_sources() / 'datapath.c')\n"
              "print(json.dumps(found))\n")
    out = venv.run(venv.bin("python"), "-c", script)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert set(found) == {*OWN_PACKAGES, "bpf"}
    for name, path in found.items():
        assert Path(path).resolve().is_relative_to(venv.site_packages.resolve()), (name, path)
    assert Path(found["bpf"]).read_text() == (ROOT / "nodeagent/datapath/bpf/datapath.c"
                                              ).read_text()


def wait_until(what: str, ready: Callable[[], object], proc: subprocess.Popen[bytes],
               log: Path, timeout: float = 90.0) -> None:
    """Polls ``ready()`` until it is true; fails with the process's log if it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited: {log.read_text()[-3000:]}")
        with contextlib.suppress(grpc.RpcError):
            if ready():
                return
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not ready: {log.read_text()[-3000:]}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def test_installed_agent_syncs_with_the_bpf_datapath(venv: Venv, tmp_path: Path) -> None:
    suffix = secrets.token_hex(3)
    node, ns = f"inst{suffix}", f"bhi{suffix}"
    pin_root = Path(f"/sys/fs/bpf/bulkhead-test-{suffix}")
    underlay_ip = f"192.168.{16 + secrets.randbelow(200)}.1"
    etcd = EtcdProcess(tmp_path / "etcd", free_port(), free_port())
    cp: subprocess.Popen[bytes] | None = None
    agent: subprocess.Popen[bytes] | None = None
    made_ns = False
    try:
        etcd.start()
        address = f"127.0.0.1:{free_port()}"
        cp_log = tmp_path / "controlplane.log"
        with cp_log.open("ab") as log:
            cp = subprocess.Popen(
                [venv.bin("bulkhead-controlplane"), "--etcd-endpoints", etcd.endpoint,
                 "--listen", address, "--cluster-name", f"installtest-{suffix}",
                 "--state-dir", str(tmp_path / "cp"), "--insecure"],
                env=venv.env, cwd=tmp_path, stdout=log, stderr=log)
        admin = admin_pb2_grpc.AdminServiceStub(grpc.insecure_channel(address))
        wait_until("control plane", lambda: admin.Status(admin_pb2.StatusRequest(), timeout=1),
                   cp, cp_log)

        netns.create(ns)
        made_ns = True
        with IPRoute(netns=ns) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
            ipr.link("add", ifname="ul", kind="veth", peer={"ifname": "ul-peer"})
            idx = ipr.link_lookup(ifname="ul")[0]
            ipr.addr("add", index=idx, address=underlay_ip, prefixlen=24)
            ipr.link("set", index=idx, state="up")

        socket = tmp_path / "agent.sock"
        metrics_port = free_port()
        agent_log = tmp_path / "agent.log"
        with agent_log.open("ab") as log:
            agent = subprocess.Popen(
                [venv.bin("bulkhead-agent"), "--node", node, "--controlplane", address,
                 "--underlay-ip", underlay_ip, "--datapath", "bpf", "--netns", ns,
                 "--socket", str(socket), "--bpf-pin-root", str(pin_root),
                 "--api-listen", "none", "--metrics-listen", f"127.0.0.1:{metrics_port}",
                 "--insecure"],
                env=venv.env, cwd=tmp_path, stdout=log, stderr=log)
        local = agent_pb2_grpc.AgentServiceStub(grpc.insecure_channel(f"unix:{socket}"))

        def synced() -> bool:
            return socket.exists() and local.AgentStatus(agent_pb2.AgentStatusRequest(),
                                                         timeout=2).synced

        wait_until("agent", synced, agent, agent_log)
        status = local.AgentStatus(agent_pb2.AgentStatusRequest(), timeout=5)
        assert (status.node, status.datapath, status.synced) == (node, "bpf", True)
        assert status.map_entries["ipcache"] >= 1   # its own underlay IP as the host identity
        assert status.proxy.running and list(status.proxy.listeners) == ["127.0.0.1:15001"]
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                    timeout=10) as response:
            scraped = {s.name: s.value for family in text_string_to_metric_families(
                response.read().decode()) for s in family.samples}
        assert scraped["bulkhead_applied_revision"] >= status.applied_revision > 0
        assert scraped["bulkhead_endpoints"] == 0

        # The installed CLI, against the installed control plane, lists the node.
        listed = venv.run(venv.bin("bulkhead"), "--server", address, "--insecure", "node", "list",
                          "-o", "json")
        assert listed.returncode == 0, listed.stderr
        assert node in [n["name"] for n in json.loads(listed.stdout)]
    finally:
        stop(agent)
        stop(cp)
        with contextlib.suppress(Exception):
            etcd.stop()
        if made_ns:
            with contextlib.suppress(Exception):
                netns.remove(ns)
        shutil.rmtree(pin_root, ignore_errors=True)
