"""The agent's side of the proxy's control channel (blocking; one request at a time)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nodeagent.proxy.rules import L7Entry, entry_to_json


class ProxyError(RuntimeError):
    pass


class ProxyControl:
    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(path))
        except OSError:
            self.sock.close()
            raise
        self.file = self.sock.makefile("rb")

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        line = self.file.readline()
        if not line:
            raise ProxyError("the proxy closed its control channel")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise ProxyError(answer["error"])
        return answer

    def set(self, port: int, entries: Iterable[L7Entry]) -> dict[str, Any]:
        return self.request({"op": "set", "port": port,
                             "entries": [entry_to_json(e) for e in entries]})

    def stats(self) -> dict[str, Any]:
        return self.request({"op": "stats"})

    def flows(self) -> list[dict[str, Any]]:
        flows: list[dict[str, Any]] = self.request({"op": "flows"})["flows"]
        return flows

    def close(self) -> None:
        self.file.close()
        self.sock.close()
