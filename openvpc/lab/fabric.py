"""The in-memory underlay: a learning switch (L2 underlay) and routers with ECMP (L3 underlay).

Deterministic: devices return the frames they send; `lab.sim` moves them along links.
"""

import struct
from dataclasses import dataclass, field
from zlib import crc32

from openvpc.packet.arp import ARP_REQUEST, parse_arp
from openvpc.packet.checksum import checksum
from openvpc.packet.errors import Malformed
from openvpc.packet.ethernet import (
    ETH_P_ARP,
    ETH_P_IP,
    build_ethernet,
    is_multicast,
    parse_ethernet,
)
from openvpc.packet.ipv4 import PROTO_TCP, PROTO_UDP, parse_ipv4
from openvpc.vrouter import replies
from openvpc.vrouter.lpm import Lpm

Out = list[tuple[int, bytes]]  # (output port, frame)


@dataclass
class Switch:
    """A VLAN-aware learning bridge: learns (VLAN, MAC) -> port, floods the unknown."""

    name: str
    ports: int
    fdb: dict[tuple[int | None, bytes], int] = field(default_factory=dict)
    frames: int = 0

    def receive(self, port: int, frame: bytes) -> Out:
        try:
            eth = parse_ethernet(frame)
        except Malformed:
            return []
        self.frames += 1
        self.fdb[(eth.vlan, eth.src)] = port
        out = None if is_multicast(eth.dst) else self.fdb.get((eth.vlan, eth.dst))
        if out is not None:
            return [] if out == port else [(out, frame)]
        return [(p, frame) for p in range(self.ports) if p != port]


@dataclass
class RouterPort:
    ip: bytes
    plen: int
    mac: bytes


@dataclass
class Router:
    """An underlay router: ARP on each port, static routes with ECMP over the outer 5-tuple."""

    name: str
    ports: list[RouterPort]
    routes: Lpm[tuple[tuple[int, bytes | None], ...]] = field(default_factory=Lpm)
    neighbors: dict[bytes, bytes] = field(default_factory=dict)
    pending: dict[bytes, list[bytes]] = field(default_factory=dict)
    forwarded: int = 0

    def add_route(self, prefix: bytes, plen: int, hops: list[tuple[int, bytes | None]]) -> None:
        """`hops` are (port, gateway); a gateway of None means the prefix is on that port."""
        self.routes.add(prefix, plen, tuple(hops))

    def receive(self, port: int, frame: bytes) -> Out:
        try:
            eth = parse_ethernet(frame)
            me = self.ports[port]
            if eth.ethertype == ETH_P_ARP:
                return self._arp(port, frame, eth.offset)
            if eth.dst != me.mac or eth.ethertype != ETH_P_IP:
                return []
            ip = parse_ipv4(frame, eth.offset)
        except Malformed:
            return []
        if ip.ttl <= 1:
            return []
        hops = self.routes.lookup(ip.dst)
        if not hops:
            return []
        out_port, gateway = hops[_flow_hash(frame, eth.offset, ip.proto) % len(hops)]
        packet = bytearray(frame[eth.offset : eth.offset + ip.total_length])
        packet[8] -= 1
        struct.pack_into("!H", packet, 10, 0)
        struct.pack_into("!H", packet, 10, checksum(packet[: ip.header_len]))
        self.forwarded += 1
        return self._send(out_port, gateway or ip.dst, bytes(packet))

    def _send(self, port: int, hop: bytes, packet: bytes) -> Out:
        mac = self.neighbors.get(hop)
        me = self.ports[port]
        if mac is not None:
            return [(port, build_ethernet(mac, me.mac, ETH_P_IP, packet))]
        self.pending.setdefault(hop, []).append(packet)
        return [(port, replies.arp_request(me.mac, me.ip, hop))]

    def _arp(self, port: int, frame: bytes, offset: int) -> Out:
        arp = parse_arp(frame, offset)
        me = self.ports[port]
        if arp.tpa != me.ip:
            return []
        self.neighbors[arp.spa] = arp.sha
        out: Out = [
            (port, build_ethernet(arp.sha, me.mac, ETH_P_IP, p))
            for p in self.pending.pop(arp.spa, [])
        ]
        if arp.op == ARP_REQUEST:
            out.append((port, replies.arp_reply(arp, me.mac)))
        return out


def _flow_hash(frame: bytes, offset: int, proto: int) -> int:
    """Layer-4 hash of the outer header, as fib_multipath_hash_policy=1 does."""
    ihl = (frame[offset] & 0x0F) * 4
    ports = frame[offset + ihl : offset + ihl + 4] if proto in (PROTO_TCP, PROTO_UDP) else b""
    return crc32(frame[offset + 12 : offset + 20] + bytes((proto,)) + ports)
