"""New TCP connections per second: a tiny server and client, run inside namespaces by path.

`connrate.py server PORT` answers every connection's one byte with one byte and closes first
(the TIME_WAIT stays on the server, so the client never runs out of ports); `connrate.py client
IP PORT SECONDS` connects, sends a byte, reads the answer and the close, in a loop, and prints
JSON {"connections", "failures", "seconds"}. Self-contained: no imports from the project.
"""

import json
import socket
import sys
import time

CONNECT_TIMEOUT_S = 2.0


def serve(port: int) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(1024)
    print("listening", flush=True)
    while True:
        conn, _ = listener.accept()
        try:
            conn.settimeout(CONNECT_TIMEOUT_S)
            if conn.recv(1):
                conn.sendall(b"y")
        except OSError:
            pass
        finally:
            conn.close()


def one(ip: str, port: int) -> bool:
    """One connection: connect, a byte each way, the server's close; False on any failure."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(CONNECT_TIMEOUT_S)
    try:
        s.connect((ip, port))
        s.sendall(b"x")
        return s.recv(1) == b"y" and s.recv(1) == b""
    except OSError:
        return False
    finally:
        s.close()


def client(ip: str, port: int, seconds: float) -> dict[str, float]:
    done = failed = 0
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        if one(ip, port):
            done += 1
        else:
            failed += 1
    return {"connections": done, "failures": failed, "seconds": time.monotonic() - start}


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "server":
        serve(int(argv[1]))
        return 0
    if len(argv) == 4 and argv[0] == "client":
        print(json.dumps(client(argv[1], int(argv[2]), float(argv[3]))))
        return 0
    print("usage: connrate.py server PORT | client IP PORT SECONDS", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
