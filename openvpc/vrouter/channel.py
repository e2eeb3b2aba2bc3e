"""The vRouter's end of the control channel: a listening unix socket, its node's agent, and a
few read-only observers.

A connection counts only once its hello proves it: the peer runs as our user (SO_PEERCRED),
holds the node secret, and, to be the agent, lives in our network namespace. Until then it
can neither displace the agent nor touch a table. Non-blocking: the event loop calls
`accept`, `read` and `flush` when the selector says so. Framing is `control.py`'s.
"""

import contextlib
import logging
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from openvpc.credentials import parse_secret, same_secret
from openvpc.process import claim_socket_path
from openvpc.vrouter.control import (
    ROLE_AGENT,
    ROLE_OBSERVER,
    TYPE_PACKET,
    ControlError,
    FrameReader,
    encode_frame,
)

log = logging.getLogger("openvpc.vrouter")

READ_SIZE = 1 << 18
MAX_BACKLOG = 8 << 20  # bytes queued for a slow agent before punts are dropped
MAX_PENDING = 8  # connections that have not said a valid hello yet
MAX_OBSERVERS = 4
HELLO_TIMEOUT = 5.0  # seconds a new connection has to say hello
_UCRED = struct.Struct("3i")  # pid, uid, gid


class ChannelError(Exception):
    """The socket path is taken by a live vRouter, or is not a socket."""


class Refusal(Exception):
    """A hello the vRouter does not accept; the message goes back before the close."""


@dataclass(eq=False)
class Peer:
    """One connection: `role` is None until its hello is accepted."""

    sock: socket.socket
    pid: int
    same_netns: bool
    since: float
    role: str | None = None
    mask: int = 0  # the selector events it is registered for
    reader: FrameReader = field(default_factory=FrameReader)
    out: bytearray = field(default_factory=bytearray)


def admit(request: Any, secret: bytes, same_netns: bool) -> str:
    """The role a hello earns (agent or observer); raises Refusal. Pure."""
    if not isinstance(request, dict) or request.get("op") != "hello":
        raise Refusal("the first request must be a hello")
    given = request.get("secret")
    proof = parse_secret(given) if isinstance(given, str) else None
    if proof is None or not same_secret(proof, secret):
        raise Refusal("bad node secret")
    role = request.get("role", ROLE_AGENT)
    if role == ROLE_OBSERVER:
        return ROLE_OBSERVER
    if role != ROLE_AGENT:
        raise Refusal(f"unknown role {str(role)[:32]!r}")
    if not same_netns:
        raise Refusal("the agent must run in the vRouter's network namespace")
    return ROLE_AGENT


def _netns_id(pid: int | str) -> tuple[int, int] | None:
    try:
        st = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return None
    return st.st_dev, st.st_ino


class AgentChannel:
    """The listener, the connections, and which of them is the agent."""

    def __init__(
        self, path: str, secret: bytes, on_drop: Callable[[Peer], None] | None = None
    ) -> None:
        self.path = path
        self.secret = secret
        self.on_drop = on_drop  # told before a connection closes (to unregister it)
        self.refused = 0  # connections closed for their credentials
        self._netns = _netns_id("self")
        try:
            claim_socket_path(path, "vRouter")
        except OSError as e:
            raise ChannelError(str(e)) from e
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.listener.bind(path)
            os.chmod(path, 0o600)
            self.listener.listen(16)
            self.listener.setblocking(False)
        except OSError as e:
            self.listener.close()
            raise ChannelError(f"cannot listen on {path}: {e}") from e
        self.peers: list[Peer] = []
        self.agent: Peer | None = None

    @property
    def connected(self) -> bool:
        return self.agent is not None

    def accept(self, now: float) -> Peer | None:
        """Take a waiting connection from a process of our user; it has no role yet."""
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return None
        pid, uid, _ = _UCRED.unpack(
            conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        )
        pending = sum(p.role is None for p in self.peers)
        why = None
        if uid != os.geteuid():
            why = f"peer uid {uid} is not ours"
        elif pending >= MAX_PENDING:
            why = f"{pending} connections are already waiting for their hello"
        if why is not None:
            self._refuse(why, pid)
            conn.close()
            return None
        conn.setblocking(False)
        same = self._netns is not None and _netns_id(pid) == self._netns
        peer = Peer(conn, pid, same, now)
        self.peers.append(peer)
        return peer

    def hello(self, peer: Peer, request: Any) -> str:
        """Give `peer` the role its hello earns; a new agent replaces the old one (it proved
        itself, and a restarted agent must not wait for its dead predecessor). Raises Refusal,
        after which the caller closes the connection."""
        try:
            role = admit(request, self.secret, peer.same_netns)
            observers = sum(p.role == ROLE_OBSERVER for p in self.peers)
            if role == ROLE_OBSERVER and observers >= MAX_OBSERVERS:
                raise Refusal(f"already {observers} observers")
        except Refusal as e:
            self._refuse(str(e), peer.pid)
            raise
        if role == ROLE_AGENT and self.agent is not None and self.agent is not peer:
            self.drop(self.agent)
        peer.role = role
        if role == ROLE_AGENT:
            self.agent = peer
        return role

    def expire(self, now: float) -> None:
        """Close connections that never said a valid hello in time."""
        for peer in [p for p in self.peers if p.role is None and now - p.since > HELLO_TIMEOUT]:
            self._refuse("no hello in time", peer.pid)
            self.drop(peer)

    def read(self, peer: Peer) -> list[tuple[int, bytes]] | None:
        """Frames the peer sent; None once it has gone (or broke the framing)."""
        try:
            data = peer.sock.recv(READ_SIZE)
        except BlockingIOError:
            return []
        except OSError:
            data = b""
        if not data:
            return None
        try:
            return peer.reader.feed(data)
        except ControlError:
            return None

    def send(self, kind: int, body: bytes) -> bool:
        """Queue a frame for the agent; packets are refused (False) while a slow agent's
        backlog is full."""
        agent = self.agent
        if agent is None:
            return False
        if kind == TYPE_PACKET and len(agent.out) > MAX_BACKLOG:
            return False
        return self.send_to(agent, kind, body)

    def send_to(self, peer: Peer, kind: int, body: bytes) -> bool:
        peer.out += encode_frame(kind, body)
        return self.flush(peer)

    def flush(self, peer: Peer) -> bool:
        """Write what the socket takes now; False if the peer went away meanwhile."""
        while peer.out:
            try:
                sent = peer.sock.send(peer.out)
            except BlockingIOError:
                return True
            except OSError:
                self.drop(peer)
                return False
            del peer.out[:sent]
        return True

    def drop(self, peer: Peer) -> None:
        """Forget a connection (forwarding goes on without the agent)."""
        if peer not in self.peers:
            return
        self.peers.remove(peer)
        if self.on_drop is not None:
            self.on_drop(peer)
        with contextlib.suppress(OSError):
            peer.sock.close()
        if peer is self.agent:
            self.agent = None

    def close(self) -> None:
        for peer in list(self.peers):
            self.drop(peer)
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _refuse(self, why: str, pid: int) -> None:
        self.refused += 1
        if self.refused <= 10 or self.refused % 1000 == 0:
            log.warning("control connection from pid %d refused: %s", pid, why)
