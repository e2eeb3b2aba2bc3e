"""An in-memory VM: a minimal IPv4 host that ARPs, pings, answers pings and TCP SYNs.

It reacts the way a Linux guest would to what the vRouter sends it, so in-memory scenarios
exercise the same exchanges the real lab does; every frame it receives is kept in `inbox`.
"""

import ipaddress
from dataclasses import dataclass, field

from openvpc.packet.arp import ARP_REPLY, ARP_REQUEST, parse_arp
from openvpc.packet.errors import Malformed
from openvpc.packet.ethernet import (
    BROADCAST,
    ETH_P_ARP,
    ETH_P_IP,
    build_ethernet,
    parse_ethernet,
)
from openvpc.packet.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, IPv4, build_ipv4, parse_ipv4
from openvpc.packet.l4 import (
    ICMP_ECHO_REPLY,
    ICMP_ECHO_REQUEST,
    TCP_ACK,
    TCP_RST,
    TCP_SYN,
    build_icmp,
    build_tcp,
    build_udp,
    parse_icmp,
    parse_tcp,
    parse_udp,
)
from openvpc.vrouter import replies

MAX_PENDING = 8


@dataclass(frozen=True, slots=True)
class Received:
    """A datagram delivered to the VM, decoded enough for assertions."""

    src: bytes
    dst: bytes
    proto: int
    ttl: int
    kind: str  # echo_reply, echo_request, tcp_synack, tcp_rst, tcp, udp, icmp
    detail: tuple[int, ...] = ()
    frame: bytes = b""


@dataclass
class VmEndpoint:
    """A VM plugged into vif `vif` of its node's vRouter."""

    name: str
    mac: bytes
    ip: bytes
    prefix_len: int
    gateway: bytes
    listening: set[int] = field(default_factory=set)
    arp_cache: dict[bytes, bytes] = field(default_factory=dict)
    inbox: list[bytes] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    pending: dict[bytes, list[bytes]] = field(default_factory=dict)
    outbox: list[bytes] = field(default_factory=list)

    # -- sending -------------------------------------------------------------------
    def on_link(self, dst: bytes) -> bool:
        net = ipaddress.IPv4Network((self.ip, self.prefix_len), strict=False)
        return ipaddress.IPv4Address(dst) in net

    def arp_request(self, target: bytes) -> bytes:
        return replies.arp_request(self.mac, self.ip, target)

    def send_ip(
        self, dst: bytes, proto: int, payload: bytes, ttl: int = 64, df: bool = True
    ) -> None:
        """Queue an IP datagram, resolving the next hop by ARP first if needed."""
        packet = build_ipv4(self.ip, dst, proto, payload, ttl=ttl, df=df)
        hop = dst if self.on_link(dst) else self.gateway
        mac = self.arp_cache.get(hop)
        if mac is not None:
            self.outbox.append(build_ethernet(mac, self.mac, ETH_P_IP, packet))
            return
        queue = self.pending.setdefault(hop, [])
        if len(queue) < MAX_PENDING:
            queue.append(packet)
        if len(queue) == 1:
            self.outbox.append(self.arp_request(hop))

    def ping(self, dst: bytes, ident: int = 1, seq: int = 1, size: int = 56, **kw: object) -> None:
        payload = bytes(i & 0xFF for i in range(size))
        icmp = build_icmp(
            ICMP_ECHO_REQUEST, 0, ident.to_bytes(2, "big") + seq.to_bytes(2, "big"), payload
        )
        self.send_ip(dst, PROTO_ICMP, icmp, **kw)  # type: ignore[arg-type]

    def udp(self, dst: bytes, sport: int, dport: int, payload: bytes = b"x") -> None:
        self.send_ip(dst, PROTO_UDP, build_udp(self.ip, dst, sport, dport, payload))

    def tcp_syn(self, dst: bytes, sport: int, dport: int) -> None:
        self.send_ip(dst, PROTO_TCP, build_tcp(self.ip, dst, sport, dport, TCP_SYN, seq=1000))

    def send_frame(self, frame: bytes) -> None:
        self.outbox.append(frame)

    def take_outbox(self) -> list[bytes]:
        out, self.outbox = self.outbox, []
        return out

    # -- receiving -----------------------------------------------------------------
    def receive(self, frame: bytes) -> None:
        """Handle a frame from the vRouter; malformed ones are kept but otherwise ignored."""
        self.inbox.append(frame)
        try:
            eth = parse_ethernet(frame)
            if eth.dst not in (self.mac, BROADCAST):
                return
            if eth.ethertype == ETH_P_ARP:
                self._arp(frame, eth.offset)
            elif eth.ethertype == ETH_P_IP:
                ip = parse_ipv4(frame, eth.offset)
                self._ip(frame, frame[eth.offset : eth.offset + ip.total_length], ip, eth.src)
        except Malformed:
            return

    def _arp(self, frame: bytes, offset: int) -> None:
        arp = parse_arp(frame, offset)
        if arp.op == ARP_REQUEST and arp.tpa == self.ip:
            self.outbox.append(replies.arp_reply(arp, self.mac))
        if arp.op == ARP_REPLY and arp.tpa == self.ip:
            self.arp_cache[arp.spa] = arp.sha
            for packet in self.pending.pop(arp.spa, []):
                self.outbox.append(build_ethernet(arp.sha, self.mac, ETH_P_IP, packet))

    def _ip(self, frame: bytes, packet: bytes, ip: IPv4, src_mac: bytes) -> None:
        if ip.dst != self.ip:
            return
        body = packet[ip.header_len :]
        rec = None
        if ip.proto == PROTO_ICMP:
            icmp = parse_icmp(body)
            if icmp.type == ICMP_ECHO_REQUEST:
                rec = "echo_request"
                self.outbox.append(replies.echo_reply(packet, ip, src_mac, self.mac))
            else:
                rec = "echo_reply" if icmp.type == ICMP_ECHO_REPLY else "icmp"
            detail: tuple[int, ...] = (icmp.type, icmp.code, int.from_bytes(icmp.rest, "big"))
        elif ip.proto == PROTO_TCP:
            tcp = parse_tcp(body)
            detail = (tcp.sport, tcp.dport, tcp.flags)
            if tcp.flags & TCP_SYN and not tcp.flags & TCP_ACK:
                rec = "tcp_syn"
                flags = TCP_SYN | TCP_ACK if tcp.dport in self.listening else TCP_RST | TCP_ACK
                seg = build_tcp(
                    self.ip, ip.src, tcp.dport, tcp.sport, flags, seq=5000, ack=tcp.seq + 1
                )
                self.outbox.append(
                    build_ethernet(
                        src_mac, self.mac, ETH_P_IP, build_ipv4(self.ip, ip.src, PROTO_TCP, seg)
                    )
                )
            elif tcp.flags & TCP_RST:
                rec = "tcp_rst"
            else:
                rec = "tcp_synack" if tcp.flags & TCP_SYN else "tcp"
        elif ip.proto == PROTO_UDP:
            udp = parse_udp(body)
            rec, detail = "udp", (udp.sport, udp.dport)
        else:
            rec, detail = "ip", (ip.proto,)
        self.received.append(Received(ip.src, ip.dst, ip.proto, ip.ttl, rec, detail, frame))

    def got(self, kind: str, src: bytes | None = None) -> list[Received]:
        return [r for r in self.received if r.kind == kind and (src is None or r.src == src)]
