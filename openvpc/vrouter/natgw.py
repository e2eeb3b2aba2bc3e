"""A NAT gateway's translations (docs/internet.md): stateful source NAT of private flows onto
its Elastic IP, one public port per flow and destination from 1024-65535, freed when the
flow idles out. Pure: every call takes `now`."""

from dataclasses import dataclass, field

from openvpc.packet.ipv4 import PROTO_TCP
from openvpc.packet.l4 import TCP_ACK, TCP_FIN, TCP_RST

PORTS = (1024, 65535)  # AWS: the source ports a NAT gateway gives, inclusive

# (VRF, protocol, private address, private port, remote address, remote port)
Private = tuple[int, int, bytes, int, bytes, int]
# (protocol, remote address, remote port): AWS allocates ports per destination
Destination = tuple[int, bytes, int]
# (protocol, remote address, remote port, public port): how replies find their flow
Public = tuple[int, bytes, int, int]


@dataclass(frozen=True, slots=True)
class NatTimeouts:
    """Idle seconds before a translation is forgotten and its port freed. AWS times a
    connection out after 350 s idle; a TCP handshake that never completes, or a connection
    that closed, goes sooner."""

    tcp_established: float = 350.0
    tcp_transitory: float = 60.0  # SYN seen, no ACK yet
    tcp_closed: float = 10.0  # RST, or FIN both ways
    udp: float = 350.0
    other: float = 60.0  # ICMP echo


@dataclass(slots=True)
class Binding:
    """One translation: a private flow and the public port it goes out with."""

    private: Private
    port: int
    created: float
    last_used: float
    out_flags: int = 0  # TCP flags seen from the private side
    in_flags: int = 0  # ... and from the remote side
    packets: int = 0
    octets: int = 0

    @property
    def destination(self) -> Destination:
        return self.private[1], self.private[4], self.private[5]

    @property
    def public(self) -> Public:
        return (*self.destination, self.port)


@dataclass(slots=True)
class NatGatewayState:
    """One NAT gateway's translations on the node that hosts it."""

    ports: tuple[int, int] = PORTS
    timeouts: NatTimeouts = field(default_factory=NatTimeouts)
    out: dict[Private, Binding] = field(default_factory=dict)
    back: dict[Public, Binding] = field(default_factory=dict)
    used: dict[Destination, set[int]] = field(default_factory=dict)
    cursor: dict[Destination, int] = field(default_factory=dict)  # where the next search starts
    error_port_allocation: int = 0  # AWS's CloudWatch metric of the same name
    allocated: int = 0
    freed: int = 0

    @property
    def size(self) -> int:
        return self.ports[1] - self.ports[0] + 1

    def outbound(self, private: Private, now: float, tcp_flags: int = 0) -> Binding | None:
        """The translation of a packet from the private side: the flow's own, or a new one
        with a free port toward its destination; None (counted) when that destination's
        ports are all taken."""
        found = self.out.get(private)
        if found is None:
            found = self._allocate(private, now)
            if found is None:
                return None
        found.last_used = now
        found.out_flags |= tcp_flags
        return found

    def inbound(self, public: Public, now: float, tcp_flags: int = 0) -> Binding | None:
        """The translation a packet from the remote side to the public port belongs to."""
        found = self.back.get(public)
        if found is not None:
            found.last_used = now
            found.in_flags |= tcp_flags
        return found

    def _allocate(self, private: Private, now: float) -> Binding | None:
        dest = private[1], private[4], private[5]
        used = self.used.setdefault(dest, set())
        low, size = self.ports[0], self.size
        if len(used) >= size:
            self.error_port_allocation += 1
            if not used:
                del self.used[dest]
            return None
        start = self.cursor.get(dest, 0)
        # fewer taken ports than the range holds: a free one is within len(used) + 1 steps
        for step in range(len(used) + 1):
            port = low + (start + step) % size
            if port not in used:
                break
        else:  # pragma: no cover - len(used) < size guarantees a free port above
            raise AssertionError("no free port below the count of taken ones")
        used.add(port)
        self.cursor[dest] = (port - low + 1) % size
        binding = Binding(private, port, now, now)
        self.out[private] = binding
        self.back[binding.public] = binding
        self.allocated += 1
        return binding

    def _timeout(self, b: Binding) -> float:
        t = self.timeouts
        proto = b.private[1]
        if proto != PROTO_TCP:
            return t.udp if proto == 17 else t.other
        both = b.out_flags | b.in_flags
        if both & TCP_RST or (b.out_flags & TCP_FIN and b.in_flags & TCP_FIN):
            return t.tcp_closed
        return t.tcp_established if both & TCP_ACK else t.tcp_transitory

    def age(self, now: float) -> int:
        """Forget translations idle past their timeout, freeing their ports; how many."""
        gone = [b for b in self.out.values() if now - b.last_used >= self._timeout(b)]
        for b in gone:
            self.release(b)
        return len(gone)

    def release(self, b: Binding) -> None:
        del self.out[b.private]
        del self.back[b.public]
        used = self.used[b.destination]
        used.discard(b.port)
        if not used:
            del self.used[b.destination]
            self.cursor.pop(b.destination, None)
        self.freed += 1

    def stats(self) -> dict[str, int]:
        return {
            "translations": len(self.out),
            "allocated": self.allocated,
            "freed": self.freed,
            "error_port_allocation": self.error_port_allocation,
        }


class NatGateways:
    """The NAT gateways this node hosts, by id, made at their first packet; they outlive
    table rewrites (their translations are state, like flows)."""

    def __init__(self, ports: tuple[int, int] = PORTS, timeouts: NatTimeouts | None = None):
        self.ports = ports
        self.timeouts = timeouts or NatTimeouts()
        self.gateways: dict[str, NatGatewayState] = {}

    def get(self, gateway: str) -> NatGatewayState:
        found = self.gateways.get(gateway)
        if found is None:
            found = self.gateways[gateway] = NatGatewayState(self.ports, self.timeouts)
        return found

    def age(self, now: float) -> int:
        gone = sum(g.age(now) for g in self.gateways.values())
        # a gateway with nothing left and no error to report is forgotten (deleted ones)
        idle = [k for k, g in self.gateways.items() if not g.out and not g.error_port_allocation]
        for gid in idle:
            del self.gateways[gid]
        return gone

    def stats(self) -> dict[str, dict[str, int]]:
        return {gid: g.stats() for gid, g in sorted(self.gateways.items())}
