"""The southbound's wire: service and method names, JSON bodies, and listen/connect targets.

Bodies are JSON objects (utf-8) carried by grpc's generic handlers, so no code generation.
"""

import ipaddress
import json
import re
from typing import Any

from openvpc.model.nodeconfig import VmReport

SERVICE = "openvpc.Southbound"
SUBSCRIBE = "Subscribe"
ACK = "Ack"
LEARN = "Learn"
STATUS = "Status"
MAX_VMS = 4096  # VM reports in one Ack
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_IP = re.compile(r"\d{1,3}(\.\d{1,3}){3}/\d{1,2}")


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


def vm_body(vm: VmReport) -> dict[str, Any]:
    return {
        "interface_id": vm.interface_id,
        "netns": vm.netns,
        "ifname": vm.ifname,
        "ip": vm.ip,
        "instance_id": vm.instance_id,
        "name": vm.name,
    }


def parse_vms(raw: object) -> tuple[VmReport, ...]:
    """An Ack's `vms`: ValueError when it is not a bounded list of well-formed reports."""
    if not isinstance(raw, list) or len(raw) > MAX_VMS:
        raise ValueError(f"'vms' must be a list of at most {MAX_VMS} reports")
    out = []
    for item in raw:
        if not isinstance(item, dict):
            raise ValueError("a VM report is an object")
        names = [item.get(k) for k in ("interface_id", "netns", "ifname")]
        if not all(isinstance(n, str) and _ID.fullmatch(n) for n in names):
            raise ValueError("a VM report needs interface_id, netns and ifname names")
        ip = item.get("ip")
        if ip is not None and not (isinstance(ip, str) and _IP.fullmatch(ip)):
            raise ValueError("a VM report's ip is null or a.b.c.d/len")
        interface_id, netns, ifname = (str(n) for n in names)
        owner = [item.get(k, "") for k in ("instance_id", "name")]
        if not all(isinstance(n, str) and (n == "" or _ID.fullmatch(n)) for n in owner):
            raise ValueError("a VM report's instance_id and name are names")
        out.append(VmReport(interface_id, netns, ifname, ip, str(owner[0]), str(owner[1])))
    return tuple(out)
