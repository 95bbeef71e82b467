"""`bulkhead-controlplane`: runs one replica until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

from bulkhead import gctuning, log
from bulkhead.defaults import SERVER_FILE
from bulkhead.tls import ADMIN_POINTER, INSECURE_WARNING, TLS_MARKER
from controlplane import metrics
from controlplane.app import ControlPlane
from controlplane.config import Config, from_args
from controlplane.pki import bootstrap
from controlplane.server import add_join_port, build_server, join_listen, metrics_sources


async def serve(config: Config) -> None:
    _log = log.get(__name__)
    cp = ControlPlane(config)
    await cp.start()
    try:
        tls = await bootstrap.for_config(config, cp.etcd)
        server, port = await build_server(cp, config.listen, config.unix_socket, tls)
        join_port = None
        if tls is not None:
            join_port = add_join_port(server, join_listen(config.listen, port,
                                                          config.join_listen), tls)
        await server.start()
        if config.metrics_listen:
            metrics.serve(metrics_sources(cp), config.metrics_listen)
        host = config.listen.rsplit(":", 1)[0]
        address = f"{host}:{port}"
        if config.embedded:
            config.state_dir.mkdir(parents=True, exist_ok=True)
            (config.state_dir / SERVER_FILE).write_text(address + "\n")
            # Its admin credential is the one in this state dir, not one a lab pointed to.
            (config.state_dir / ADMIN_POINTER).unlink(missing_ok=True)
            marker = config.state_dir / TLS_MARKER
            if tls is not None:
                marker.write_text("mutual TLS: the CLI uses tls/admin.crt\n")
            else:
                marker.unlink(missing_ok=True)
        if config.port_file is not None:
            tmp = config.port_file.with_suffix(".tmp")
            tmp.write_text(f"{port}\n")
            tmp.replace(config.port_file)
        _log.info("control plane serving", listen=address, tls=tls is not None, join_port=join_port,
                  etcd=",".join(cp.etcd.endpoints), cluster=config.cluster_name,
                  cluster_id=config.cluster_id)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        _log.info("shutting down")
        await server.stop(grace=2)
    finally:
        await cp.stop()


def warn_if_insecure(config: Config) -> None:
    """`--insecure` is for development only: say so where an operator looks first (stderr, in
    capitals, before anything else) and in the log."""
    if config.tls:
        return
    print(f"bulkhead-controlplane: {INSECURE_WARNING}", file=sys.stderr, flush=True)
    log.get(__name__).warning("insecure mode: plaintext, no authorization (development only)",
                              flag="--insecure")


def main(argv: list[str] | None = None) -> None:
    config = from_args(argv)
    log.configure("controlplane", replica=config.replica_id)
    warn_if_insecure(config)
    gctuning.tune_for_server()
    try:
        asyncio.run(serve(config))
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"bulkhead-controlplane: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
