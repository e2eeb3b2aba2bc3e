"""Overlay encapsulation: outer headers for each tunnel kind, built from cached templates,
and the flow-entropy UDP source port."""

import struct
from zlib import crc32

from openvpc.model.forwarding import Encap
from openvpc.packet.checksum import checksum
from openvpc.packet.ethernet import ETH_LEN, ETH_P_MPLS
from openvpc.packet.ipv4 import FLAG_DF, IPV4, IPV4_LEN, PROTO_GRE, PROTO_UDP
from openvpc.packet.l4 import UDP
from openvpc.packet.tunnel import (
    UDP_PORT_MPLS,
    UDP_PORT_VXLAN,
    build_gre,
    build_mpls,
    build_vxlan,
)

ENTROPY_BASE = 49152
_TUPLE = struct.Struct("!I4s4sBHH")
_U16 = struct.Struct("!H")
OUTER_TTL = 64
MPLS_TTL = 64  # pipe model: the inner TTL is left alone, as in an Amazon VPC


def entropy_port(vrf: int, proto: int, src: bytes, dst: bytes, sport: int, dport: int) -> int:
    """Outer UDP source port, 49152-65535, stable for a flow (RFC 7348 section 5)."""
    return ENTROPY_BASE + (crc32(_TUPLE.pack(vrf, src, dst, proto, sport, dport)) & 0x3FFF)


def entropy_port_l2(vrf: int, frame: bytes) -> int:
    """Entropy for a non-IP frame: its Ethernet header and VRF."""
    return ENTROPY_BASE + (crc32(frame[:ETH_LEN], vrf) & 0x3FFF)


class OuterTemplate:
    """The outer IPv4 (+UDP or GRE) and tunnel header for one (encap, source, destination, label).

    Built once; per packet only the lengths, source port and IPv4 checksum are patched, the
    checksum incrementally from a precomputed partial sum (RFC 1624).
    """

    __slots__ = ("_partial", "encap", "header", "udp")

    def __init__(self, encap: Encap, src: bytes, dst: bytes, label: int) -> None:
        self.encap = encap
        self.udp = encap in (Encap.VXLAN, Encap.MPLSOUDP)
        if encap is Encap.VXLAN:
            tunnel = UDP.pack(0, UDP_PORT_VXLAN, 0, 0) + build_vxlan(label)
        elif encap is Encap.MPLSOUDP:
            tunnel = UDP.pack(0, UDP_PORT_MPLS, 0, 0) + build_mpls(label, MPLS_TTL)
        elif encap is Encap.MPLSOGRE:
            tunnel = build_gre(ETH_P_MPLS) + build_mpls(label, MPLS_TTL)
        else:
            raise ValueError(f"{encap} has no IP outer header")
        proto = PROTO_UDP if self.udp else PROTO_GRE
        ip = IPV4.pack(0x45, 0, 0, 0, FLAG_DF, OUTER_TTL, proto, 0, src, dst)
        self.header = bytearray(ip + tunnel)
        # the checksum with total length 0: adding the length later is one's-complement addition
        self._partial = (~checksum(ip)) & 0xFFFF

    def wrap(self, payload: bytes, sport: int) -> bytes:
        """The outer packet carrying `payload` (an IP packet or an Ethernet frame)."""
        h = self.header
        total = len(h) + len(payload)
        s = self._partial + total
        s = (s & 0xFFFF) + (s >> 16)
        _U16.pack_into(h, 2, total)
        _U16.pack_into(h, 10, ~s & 0xFFFF)
        if self.udp:
            _U16.pack_into(h, IPV4_LEN, sport)
            _U16.pack_into(h, IPV4_LEN + 4, total - IPV4_LEN)
        return bytes(h) + payload
