"""A control-plane replica in its own process for the RPC fuzz suite, built exactly as the
`replicas` fixture builds one (tests/conftest.py `start_replica`), so that a crash shows as a
dead process. `python -m tests.fuzz.server ETCD_ENDPOINT CLUSTER PORT_FILE`."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from controlplane.config import Config
from tests.conftest import start_replica


async def serve(endpoint: str, cluster: str, port_file: Path) -> None:
    # Leases and the identity grace period far beyond a run: nothing expires in the middle of
    # a call, so a refused call's "etcd unchanged" check sees only what the call did.
    replica = await start_replica(Config(
        etcd_endpoints=[endpoint], cluster_name=cluster, state_dir=Path(tempfile.gettempdir()),
        node_ttl=3600, identity_gc_grace=3600.0))
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(replica.address.rsplit(":", 1)[1] + "\n")
    tmp.replace(port_file)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
