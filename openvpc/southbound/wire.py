"""The southbound's wire: service and method names, JSON bodies, and listen/connect targets.

Bodies are JSON objects (utf-8) carried by grpc's generic handlers, so no code generation.
"""

import ipaddress
import json
from typing import Any

SERVICE = "openvpc.Southbound"
SUBSCRIBE = "Subscribe"
ACK = "Ack"
LEARN = "Learn"
STATUS = "Status"


def method_path(method: str) -> str:
    return f"/{SERVICE}/{method}"


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


class BadBody:
    """A body that is not a JSON object; handlers refuse it (grpc itself fails on None)."""

    def __init__(self, why: str) -> None:
        self.why = why


Body = dict[str, Any] | BadBody


def decode(data: bytes) -> Body:
    try:
        body = json.loads(data)
    except ValueError as e:  # UnicodeDecodeError is one
        return BadBody(f"not JSON: {e}")
    return body if isinstance(body, dict) else BadBody("not a JSON object")


def grpc_target(target: str) -> str:
    """`unix:/path` or `tcp:host:port` as grpc spells it (for both server and channel).

    Raises ValueError with the accepted forms on anything else.
    """
    if target.startswith("unix:") and len(target) > len("unix:"):
        return target
    if target.startswith("tcp:"):
        host, sep, port = target[len("tcp:") :].rpartition(":")
        if sep and host and port.isdigit() and int(port) < 65536:
            return (
                f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
            )
    raise ValueError(f"bad target {target!r}: use unix:/PATH or tcp:HOST:PORT")


def unix_path(target: str) -> str | None:
    """The socket file of a `unix:` target, None for TCP."""
    if not target.startswith("unix:"):
        return None
    path = target[len("unix:") :]
    # grpc also accepts unix:///abs/path
    return "/" + path.lstrip("/") if path.startswith("//") else path


def is_local(target: str) -> bool:
    """Whether `target` never leaves the host: a unix socket or a loopback TCP address (where
    plaintext is acceptable; anything else needs TLS)."""
    if unix_path(target) is not None:
        return True
    grpc_target(target)  # raises on a malformed target
    host = target[len("tcp:") :].rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve anywhere
