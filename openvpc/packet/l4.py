"""ICMP, UDP and TCP headers, with checksums over the IPv4 pseudo-header."""

import struct
from typing import NamedTuple

from openvpc.packet.checksum import checksum, pseudo_header_sum
from openvpc.packet.errors import Malformed
from openvpc.packet.ipv4 import PROTO_ICMP, PROTO_TCP, PROTO_UDP, IPv4

ICMP = struct.Struct("!BBH4s")
UDP = struct.Struct("!HHHH")
TCP = struct.Struct("!HHIIBBHHH")
ICMP_LEN = 8
UDP_LEN = 8
TCP_LEN = 20

ICMP_ECHO_REPLY = 0
ICMP_DEST_UNREACH = 3
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11
ICMP_FRAG_NEEDED = 4  # code of DEST_UNREACH

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10


class Icmp(NamedTuple):
    type: int
    code: int
    checksum: int
    rest: bytes  # id+seq for echo, unused+MTU for frag-needed


class Udp(NamedTuple):
    sport: int
    dport: int
    length: int
    checksum: int


class Tcp(NamedTuple):
    sport: int
    dport: int
    seq: int
    ack: int
    header_len: int
    flags: int
    window: int
    checksum: int


def parse_icmp(buf: bytes | memoryview, offset: int = 0) -> Icmp:
    if len(buf) - offset < ICMP_LEN:
        raise Malformed("short_icmp")
    return Icmp(*ICMP.unpack_from(buf, offset))


def build_icmp(type_: int, code: int, rest: bytes, payload: bytes = b"") -> bytes:
    body = bytearray(ICMP.pack(type_, code, 0, rest) + payload)
    struct.pack_into("!H", body, 2, checksum(body))
    return bytes(body)


def parse_udp(buf: bytes | memoryview, offset: int = 0) -> Udp:
    if len(buf) - offset < UDP_LEN:
        raise Malformed("short_udp")
    h = Udp(*UDP.unpack_from(buf, offset))
    if h.length < UDP_LEN or h.length > len(buf) - offset:
        raise Malformed("udp_bad_length")
    return h


def build_udp(
    src: bytes, dst: bytes, sport: int, dport: int, payload: bytes, with_checksum: bool = True
) -> bytes:
    """A UDP datagram; the checksum covers the pseudo-header unless disabled (0 = none)."""
    length = UDP_LEN + len(payload)
    body = bytearray(UDP.pack(sport, dport, length, 0) + payload)
    if with_checksum:
        csum = checksum(body, pseudo_header_sum(src, dst, PROTO_UDP, length)) or 0xFFFF
        struct.pack_into("!H", body, 6, csum)
    return bytes(body)


def parse_tcp(buf: bytes | memoryview, offset: int = 0) -> Tcp:
    if len(buf) - offset < TCP_LEN:
        raise Malformed("short_tcp")
    sport, dport, seq, ack, off, flags, window, csum, _urg = TCP.unpack_from(buf, offset)
    hlen = (off >> 4) * 4
    if hlen < TCP_LEN or hlen > len(buf) - offset:
        raise Malformed("tcp_bad_length")
    return Tcp(sport, dport, seq, ack, hlen, flags, window, csum)


def build_tcp(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    flags: int,
    seq: int = 0,
    ack: int = 0,
    window: int = 65535,
    payload: bytes = b"",
    options: bytes = b"",
) -> bytes:
    """A TCP segment with data offset and checksum filled in."""
    if len(options) % 4:
        raise ValueError("TCP options must be a multiple of 4 bytes")
    hlen = TCP_LEN + len(options)
    body = bytearray(TCP.pack(sport, dport, seq, ack, (hlen // 4) << 4, flags, window, 0, 0))
    body += options + payload
    struct.pack_into(
        "!H", body, 16, checksum(body, pseudo_header_sum(src, dst, PROTO_TCP, len(body)))
    )
    return bytes(body)


def l4_checksum_ok(src: bytes, dst: bytes, proto: int, segment: bytes | memoryview) -> bool:
    """Whether a UDP or TCP segment's checksum verifies (a zero UDP checksum means none)."""
    if proto == PROTO_UDP and bytes(segment[6:8]) == b"\x00\x00":
        return True
    return checksum(segment, pseudo_header_sum(src, dst, proto, len(segment))) == 0


_PORTS = struct.Struct("!HH")
_ICMP_HEAD = struct.Struct("!BBHH")


def l4_ports(packet: bytes, ip: IPv4) -> tuple[int, int]:
    """Ports for the flow key: TCP/UDP ports, the echo id both ways for ICMP echo."""
    if ip.flags_frag & 0x3FFF:  # every fragment of a datagram shares one key
        return 0, 0
    p = ip.header_len
    if ip.proto in (PROTO_TCP, PROTO_UDP):
        if len(packet) < p + 4:
            raise Malformed("short_l4")
        sport, dport = _PORTS.unpack_from(packet, p)
        return sport, dport
    if ip.proto == PROTO_ICMP:
        if len(packet) < p + 8:
            raise Malformed("short_icmp")
        type_, code, _, ident = _ICMP_HEAD.unpack_from(packet, p)
        if type_ in (0, 8):
            return ident, ident
        return type_, code
    return 0, 0
