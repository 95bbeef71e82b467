"""HTTP/1.1 keep-alive test server run inside a pod namespace.

Usage: python httpserve.py NAME PORT.  Every request is answered 200 with the body
"NAME METHOD TARGET from CLIENT_IP bytes=N headers=k:v,..." where N counts the request body
it read (Content-Length or chunked, read in pieces, never kept).  Prints "ready" once
listening.
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes
    server_name_: str = ""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body_length(self) -> int:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return total
                left = size
                while left:
                    left -= len(self.rfile.read(min(left, 65536)))
                self.rfile.readline()
                total += size
        left = total = int(self.headers.get("Content-Length", "0"))
        while left:
            got = self.rfile.read(min(left, 65536))
            if not got:
                break
            left -= len(got)
        return total

    def _answer(self) -> None:
        n = self._body_length()
        shown = ",".join(f"{k.lower()}:{v}" for k, v in self.headers.items()
                         if k.lower().startswith("x-"))
        body = (f"{self.server_name_} {self.command} {self.path} from {self.client_address[0]}"
                f" bytes={n} headers={shown}\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer


def main() -> None:
    name, port = sys.argv[1], int(sys.argv[2])
    Handler.server_name_ = name
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
