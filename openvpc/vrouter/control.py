"""The local control channel between an agent and its vRouter (our netlink): framing and client.

A stream unix socket carries frames of `length (4 bytes, big endian) | type (1 byte) | body`.
Type J is a JSON object: requests carry "id" and "op", replies echo "id" with "ok" and either
"result" or "error". Type P is a packet in the agent-header format of `punt.py`: punted frames
from the vRouter, INJECT frames from the agent. The first request must be a hello with the node
secret; an observer (role "observer") may then only hello, dump, flows, show and stats. Requests:

  hello {"role": "agent" | "observer", "secret": hex}
                                -> {"boot_id": str, "generation": int | None, "role": str,
                                    "refused": connections refused since start,
                                    "datapath": "python" (VMs on TAPs) | "ebpf" (on veths)}
  batch {"ops": [...], "generation": int | None}
        each op {"op": "set", "kind": K, "obj": {...}} or {"op": "delete", "kind": K, "key": str}
        applied in order; the generation is recorded once all applied -> {"applied": n}
  dump                          -> {"generation": int | None,
                                    "objects": [{"kind": K, "obj": {...}}]}
  flow {"key": [vrf, proto, src, dst, sport, dport], "reverse": [...] | None, "action": "forward"
        | "drop"}  (addresses as text)  -> {"released": n}
  flows {"vrf": int | None, "limit": int}
                                -> `dump.flow_records`: each flow's tuple, action, what decided
                                   it (a security group rule, an ACL entry), counters, idle time
  show                          -> {"text": the table dumps of `dump.py`}
  stats                         -> the counters of `dump.stats`: drops by reason, flows (per
                                   VRF, HOLD per source), vif packet counters
"""

import contextlib
import itertools
import json
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

FRAME_HDR = struct.Struct("!IB")
TYPE_JSON = 0x4A
TYPE_PACKET = 0x50
MAX_FRAME = 16 * 1024 * 1024
ROLE_AGENT = "agent"
ROLE_OBSERVER = "observer"
# reads only: never a table write
OBSERVER_OPS = frozenset({"hello", "dump", "flows", "show", "stats"})


class ControlError(Exception):
    """The vRouter refused a request, or the channel broke."""


def encode_frame(kind: int, body: bytes) -> bytes:
    return FRAME_HDR.pack(len(body) + 1, kind) + body


def encode_json(message: dict[str, Any]) -> bytes:
    return encode_frame(TYPE_JSON, json.dumps(message, separators=(",", ":")).encode())


class FrameReader:
    """Splits a byte stream into (type, body) frames; feed it whatever recv returned."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        frames = []
        while len(self._buf) >= FRAME_HDR.size:
            length, kind = FRAME_HDR.unpack_from(self._buf, 0)
            if length < 1 or length > MAX_FRAME:
                raise ControlError(f"bad frame length {length}")
            end = 4 + length
            if len(self._buf) < end:
                break
            frames.append((kind, bytes(self._buf[FRAME_HDR.size : end])))
            del self._buf[:end]
        return frames


class ControlClient:
    """The agent's end: blocking requests from any thread; punts go to `on_packet`.

    A reader thread owns the socket's receive side and calls `on_packet`, which therefore must
    not call `request()`; `closed` is set when the vRouter goes away.
    """

    def __init__(self, path: str, on_packet: Callable[[bytes], None], timeout: float = 10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.sock.settimeout(None)
        self.timeout = timeout
        self.on_packet = on_packet
        self.closed = threading.Event()
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self._waiting: dict[int, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._reader = threading.Thread(target=self._read, name="vrouter-control", daemon=True)
        self._reader.start()

    def request(self, op: str, **fields: Any) -> Any:
        """Send one request and wait for its reply; returns "result" or raises ControlError."""
        if self.closed.is_set():
            raise ControlError("vrouter channel closed")
        rid = next(self._ids)
        done = threading.Event()
        box: list[dict[str, Any]] = []
        self._waiting[rid] = (done, box)
        try:
            self._send(encode_json({"id": rid, "op": op, **fields}))
            if not done.wait(self.timeout) or not box:
                raise ControlError(f"no reply to {op}")
        finally:
            self._waiting.pop(rid, None)
        reply = box[0]
        if not reply.get("ok"):
            raise ControlError(str(reply.get("error", "refused")))
        return reply.get("result")

    def hello(self, secret: bytes, role: str = ROLE_AGENT) -> Any:
        """The first request on a connection: prove the node secret, take `role`."""
        return self.request("hello", role=role, secret=secret.hex())

    def send_packet(self, data: bytes) -> None:
        self._send(encode_frame(TYPE_PACKET, data))

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def _send(self, frame: bytes) -> None:
        try:
            with self._send_lock:
                self.sock.sendall(frame)
        except OSError as e:
            self._broken()
            raise ControlError(f"vrouter channel: {e}") from e

    def _read(self) -> None:
        reader = FrameReader()
        try:
            while True:
                data = self.sock.recv(1 << 20)
                if not data:
                    break
                for kind, body in reader.feed(data):
                    if kind == TYPE_PACKET:
                        self.on_packet(body)
                    elif kind == TYPE_JSON:
                        reply = json.loads(body)
                        waiter = self._waiting.get(reply.get("id", -1))
                        if waiter is not None:
                            waiter[1].append(reply)
                            waiter[0].set()
        except (OSError, ControlError, ValueError):
            pass
        self._broken()

    def _broken(self) -> None:
        self.closed.set()
        for done, _ in list(self._waiting.values()):
            done.set()
