"""A tiny TCP responder and client run inside VMs: the responder names its VM, so a probe tells
not just whether an address answered but who did (the isolation check of the main job)."""

import socket
import sys
import time

PORT = 7777


def serve(name: str, port: int = PORT, seconds: float = 600.0) -> None:
    """Answer every connection with `name` and a newline, for at most `seconds`."""
    deadline = time.monotonic() + seconds
    with socket.create_server(("0.0.0.0", port), reuse_port=True) as server:
        server.settimeout(1.0)
        while time.monotonic() < deadline:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(name.encode() + b"\n")


def connect(ip: str, port: int = PORT, timeout: float = 2.0) -> str:
    """The name the responder at ip:port gives, or "" when nothing answers in time."""
    try:
        with socket.create_connection((ip, port), timeout=timeout) as conn:
            return conn.makefile("rb").readline().decode(errors="replace").strip()
    except OSError:
        return ""


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "serve":
        serve(argv[1], int(argv[2]) if len(argv) > 2 else PORT)
        return 0
    if len(argv) >= 2 and argv[0] == "connect":
        print(connect(argv[1], int(argv[2]) if len(argv) > 2 else PORT))
        return 0
    print("usage: probe serve NAME [PORT] | probe connect IP [PORT]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
