"""The servers pods run: each port answers HTTP (and UDP) with the pod's name, or, with
`--app deathstar`, the deathstar service of the Star Wars scenario.

Runs inside the pod's namespace: `ip netns exec POD python -m nodeagent.pods.server ...` (lab
pods) or under `nsenter --net=...` (the agent's connectivity-test pods).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def deathstar_reply(method: str, path: str) -> tuple[int, str, str]:
    if method == "POST" and path == "/v1/request-landing":
        return 200, "text/plain", "Ship landed\n"
    if method == "PUT" and path == "/v1/exhaust-port":
        return 503, "text/plain", "Panic: deathstar exploded\n"
    if method == "GET" and path in ("/v1", "/v1/"):
        body = json.dumps({"name": "Death Star", "model": "DS-1 Orbital Battle Station",
                           "manufacturer": "Imperial Department of Military Research",
                           "class": "Deep Space Mobile Battlestation",
                           "endpoints": ["GET /v1/", "POST /v1/request-landing",
                                         "PUT /v1/exhaust-port"]}, indent=2)
        return 200, "application/json", body + "\n"
    return 404, "text/plain", "Not found\n"


def handler(pod: str, app: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "bulkhead-lab"

        def _answer(self) -> None:
            if app == "deathstar":
                code, ctype, body = deathstar_reply(self.command, self.path)
            else:
                code, ctype, body = 200, "text/plain", f"{pod}\n"
            data = body.encode()
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


def serve_udp(port: int, pod: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    while True:
        _, peer = sock.recvfrom(2048)
        sock.sendto(f"{pod}\n".encode(), peer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("pod")
    parser.add_argument("--ports", required=True, help="comma-separated ports")
    parser.add_argument("--app", choices=["name", "deathstar"], default="name")
    args = parser.parse_args()
    ports = [int(p) for p in args.ports.split(",") if p]
    for port in ports:
        server = ThreadingHTTPServer(("0.0.0.0", port), handler(args.pod, args.app))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        threading.Thread(target=serve_udp, args=(port, args.pod), daemon=True).start()
    print("ready", flush=True)
    sys.stdout.close()
    threading.Event().wait()


if __name__ == "__main__":
    main()
