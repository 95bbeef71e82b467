"""One connection attempt from inside a pod namespace; prints ok, timeout or refused.

Usage: python netprobe.py tcp|udp IP PORT TIMEOUT [SOURCE_PORT]
A TCP "ok" means the server's answer arrived; UDP "ok" means the echo came back from
IP:PORT itself (the socket is connected), "refused" that ICMP unreachable came back.
"""

from __future__ import annotations

import socket
import sys


def main() -> int:
    proto, ip, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.settimeout(timeout)
        if len(sys.argv) > 5:  # a fixed source port: a later probe may reuse the tuple's half
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("0.0.0.0", int(sys.argv[5])))
        try:
            if proto == "tcp":
                s.connect((ip, port))
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = s.recv(4096)
            else:
                s.connect((ip, port))  # connected: the answer must come from ip:port
                s.send(b"ping")
                data = s.recv(4096)
        except TimeoutError:
            print("timeout")
            return 0
        except ConnectionRefusedError:
            print("refused")
            return 0
        except OSError as e:
            print(f"error {e}")
            return 0
    print("ok" if data else "empty")
    return 0


if __name__ == "__main__":
    sys.exit(main())
