"""ARP for IPv4 over Ethernet (RFC 826)."""

import struct
from typing import NamedTuple

from openvpc.packet.errors import Malformed

ARP = struct.Struct("!HHBBH6s4s6s4s")
ARP_LEN = 28
ARP_REQUEST = 1
ARP_REPLY = 2


class Arp(NamedTuple):
    op: int
    sha: bytes
    spa: bytes
    tha: bytes
    tpa: bytes


def parse_arp(buf: bytes | memoryview, offset: int = 0) -> Arp:
    if len(buf) - offset < ARP_LEN:
        raise Malformed("short_arp")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = ARP.unpack_from(buf, offset)
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
        raise Malformed("arp_not_ipv4_ethernet")
    if op not in (ARP_REQUEST, ARP_REPLY):
        raise Malformed("arp_bad_op")
    return Arp(op, sha, spa, tha, tpa)


def build_arp(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    return ARP.pack(1, 0x0800, 6, 4, op, sha, spa, tha, tpa)
