"""A control-plane replica in its own process, built exactly as the `replicas` fixture builds
one (tests/conftest.py `start_replica`): for tests that need a crash to show as a dead process
or that measure the server's memory.

`python -m tests.procserver ETCD_ENDPOINT CLUSTER PORT_FILE [CONFIG_JSON]` serves until
killed; CONFIG_JSON holds Config overrides. `replica_process(...)` runs one for a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controlplane.config import Config


@dataclass
class ReplicaProcess:
    process: subprocess.Popen[bytes]
    address: str
    log: Path
    join_address: str = ""
    """With `tls=True`: the join port (server-authenticated TLS)."""

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def rss_bytes(self) -> int:
        """The process's resident set size now (VmRSS)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")


@contextlib.contextmanager
def replica_process(etcd_endpoint: str, cluster: str, **overrides: Any
                    ) -> Iterator[ReplicaProcess]:
    """Starts a replica process (stopped on exit) with these Config overrides (JSON values;
    `state_dir` as a string; `tls=True` for a TLS replica with its join port; plaintext
    unless told)."""
    with tempfile.TemporaryDirectory(prefix="bulkhead-replica-") as tmp:
        port_file, log = Path(tmp) / "port", Path(tmp) / "server.log"
        root = Path(__file__).resolve().parents[1]
        path = f"{root}:{root / 'proto'}"
        if os.environ.get("PYTHONPATH"):
            path += f":{os.environ['PYTHONPATH']}"
        env = {**os.environ, "PYTHONPATH": path, "BULKHEAD_LOG_LEVEL": "warning"}
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.procserver", etcd_endpoint, cluster,
                 str(port_file), json.dumps(overrides)],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
        try:
            deadline = time.monotonic() + 60
            while not port_file.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the replica did not start:\n{log.read_text()}")
                time.sleep(0.05)
            join = Path(tmp) / "join-port"
            yield ReplicaProcess(process, f"127.0.0.1:{int(port_file.read_text())}", log,
                                 f"127.0.0.1:{int(join.read_text())}" if join.exists() else "")
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _tls_server(config: Config) -> tuple[Any, int, int]:
    """A `--tls` replica as tests/security/tlsfixtures.py starts one: its server (to keep
    referenced), its gRPC and join ports; the admin credential is created under the config's
    state dir."""
    from controlplane.app import ControlPlane
    from controlplane.pki import bootstrap
    from controlplane.server import add_join_port, build_server

    cp = ControlPlane(config)
    await cp.start()
    server_tls = await bootstrap.for_config(config, cp.etcd)
    assert server_tls is not None
    server, port = await build_server(cp, "127.0.0.1:0", tls=server_tls)
    join_port = add_join_port(server, "127.0.0.1:0", server_tls)
    await server.start()
    return server, port, join_port


async def serve(endpoint: str, cluster: str, port_file: Path, overrides: dict[str, Any]) -> None:
    from tests.conftest import start_replica

    if "state_dir" in overrides:
        overrides["state_dir"] = Path(overrides["state_dir"])
    config = Config(etcd_endpoints=[endpoint], cluster_name=cluster,
                    **{"state_dir": Path(tempfile.gettempdir()), "tls": False, **overrides})
    serving: Any  # referenced until the process ends: a collected server stops serving
    if config.tls:
        serving, port, join_port = await _tls_server(config)
        (port_file.parent / "join-port").write_text(f"{join_port}\n")
    else:
        serving = await start_replica(config)
        port = int(serving.address.rsplit(":", 1)[1])
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(f"{port}\n")
    tmp.replace(port_file)
    await asyncio.Event().wait()
    del serving


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2], Path(sys.argv[3]),
                      json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}))
