"""Small traffic tools run inside VMs by the main job, tests and benchmarks.

serve/connect: a TCP responder that names its VM, so a probe tells who answered (isolation);
sink/source: a bulk TCP transfer with a SHA-256 of what crossed; ttl-listen/ttl-send: the TTL
a UDP datagram arrives with (no hop may decrement it). Listeners print "listening PORT" first.
"""

import hashlib
import socket
import sys
import time

PORT = 7777
CHUNK = 65536
IP_RECVTTL = 12  # linux/in.h; Python 3.11 does not export it


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


def _pattern(total: int) -> bytes:
    block = hashlib.sha256(str(total).encode()).digest() * (CHUNK // 32)
    return block


def ready(port: int) -> None:
    """Tell whoever started us that we listen: a test waits for this line, not a sleep."""
    print(f"listening {port}", flush=True)


def sink(port: int, timeout: float = 60.0) -> str:
    """Accept one connection, read to EOF; "<bytes> <sha256>"."""
    digest = hashlib.sha256()
    count = 0
    with socket.create_server(("0.0.0.0", port)) as server:
        ready(port)
        server.settimeout(timeout)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(timeout)
            while data := conn.recv(CHUNK):
                digest.update(data)
                count += len(data)
    return f"{count} {digest.hexdigest()}"


def source(ip: str, port: int, total: int, timeout: float = 60.0) -> str:
    """Send `total` bytes of a pattern that differs per offset; "<bytes> <sha256>"."""
    digest = hashlib.sha256()
    block = _pattern(total)
    sent = 0
    with socket.create_connection((ip, port), timeout=timeout) as conn:
        while sent < total:
            chunk = block[: min(CHUNK, total - sent)]
            chunk = sent.to_bytes(8, "big") + chunk[8:] if len(chunk) > 8 else chunk
            conn.sendall(chunk)
            digest.update(chunk)
            sent += len(chunk)
    return f"{sent} {digest.hexdigest()}"


def ttl_listen(port: int, timeout: float = 10.0) -> int:
    """The IP TTL of the first UDP datagram to arrive on `port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        s.bind(("0.0.0.0", port))
        ready(port)
        s.settimeout(timeout)
        _, ancdata, _, _ = s.recvmsg(2048, socket.CMSG_SPACE(4))
        for level, kind, data in ancdata:
            if level == socket.IPPROTO_IP and kind == socket.IP_TTL:
                return int.from_bytes(data[:4], sys.byteorder)
    return -1


def ttl_send(ip: str, port: int, ttl: int, count: int = 5) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        for _ in range(count):
            s.sendto(b"ttl", (ip, port))
            time.sleep(0.1)


def main(argv: list[str]) -> int:
    cmd, args = (argv[0], argv[1:]) if argv else ("", [])
    if cmd == "serve" and args:
        serve(args[0], int(args[1]) if len(args) > 1 else PORT)
    elif cmd == "connect" and args:
        print(connect(args[0], int(args[1]) if len(args) > 1 else PORT))
    elif cmd == "sink" and len(args) == 1:
        print(sink(int(args[0])))
    elif cmd == "source" and len(args) == 3:
        print(source(args[0], int(args[1]), int(args[2])))
    elif cmd == "ttl-listen" and len(args) == 1:
        print(ttl_listen(int(args[0])))
    elif cmd == "ttl-send" and len(args) == 3:
        ttl_send(args[0], int(args[1]), int(args[2]))
    else:
        print(
            "usage: probe serve NAME [PORT] | connect IP [PORT] | sink PORT"
            " | source IP PORT BYTES | ttl-listen PORT | ttl-send IP PORT TTL",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
