"""The vRouter's end of the control channel: a listening unix socket and at most one agent.

Non-blocking: the event loop calls `accept`, `read` and `flush` when the selector says so, and
checks `wants_write` to know when to wait for writability. Framing is `control.py`'s.
"""

import contextlib
import os
import socket
from collections.abc import Callable

from openvpc.process import claim_socket_path
from openvpc.vrouter.control import (
    TYPE_PACKET,
    ControlError,
    FrameReader,
    encode_frame,
)

READ_SIZE = 1 << 18
MAX_BACKLOG = 8 << 20  # bytes queued for a slow agent before punts are dropped


class ChannelError(Exception):
    """The socket path is taken by a live vRouter, or is not a socket."""


class AgentChannel:
    """The listener and the current agent connection (a new agent replaces the old one)."""

    def __init__(self, path: str, on_drop: Callable[[socket.socket], None] | None = None) -> None:
        self.path = path
        self.on_drop = on_drop  # told before a connection closes (to unregister it)
        try:
            claim_socket_path(path, "vRouter")
        except OSError as e:
            raise ChannelError(str(e)) from e
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.listener.bind(path)
            self.listener.listen(4)
            self.listener.setblocking(False)
        except OSError as e:
            self.listener.close()
            raise ChannelError(f"cannot listen on {path}: {e}") from e
        self.conn: socket.socket | None = None
        self._reader = FrameReader()
        self._out = bytearray()

    @property
    def connected(self) -> bool:
        return self.conn is not None

    @property
    def wants_write(self) -> bool:
        return self.conn is not None and bool(self._out)

    def accept(self) -> socket.socket | None:
        """Take a waiting agent, dropping the previous one; returns the new connection."""
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return None
        self.drop()
        conn.setblocking(False)
        self.conn = conn
        return conn

    def read(self) -> list[tuple[int, bytes]] | None:
        """Frames the agent sent; None once it has gone (or broke the framing)."""
        if self.conn is None:
            return None
        try:
            data = self.conn.recv(READ_SIZE)
        except BlockingIOError:
            return []
        except OSError:
            data = b""
        if not data:
            return None
        try:
            return self._reader.feed(data)
        except ControlError:
            return None

    def send(self, kind: int, body: bytes) -> bool:
        """Queue a frame; packets are refused (False) while a slow agent's backlog is full."""
        if self.conn is None:
            return False
        if kind == TYPE_PACKET and len(self._out) > MAX_BACKLOG:
            return False
        self._out += encode_frame(kind, body)
        self.flush()
        return True

    def flush(self) -> bool:
        """Write what the socket takes now; False if the agent went away meanwhile."""
        if self.conn is None:
            return False
        while self._out:
            try:
                sent = self.conn.send(self._out)
            except BlockingIOError:
                return True
            except OSError:
                self.drop()
                return False
            del self._out[:sent]
        return True

    def drop(self) -> None:
        """Forget the current agent (forwarding goes on without it)."""
        if self.conn is not None:
            if self.on_drop is not None:
                self.on_drop(self.conn)
            with contextlib.suppress(OSError):
                self.conn.close()
        self.conn = None
        self._reader = FrameReader()
        self._out.clear()

    def close(self) -> None:
        self.drop()
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
