"""IPv4 header: parse (options tolerated, checksum verified), build, and fragmentation."""

import ipaddress
import struct
from typing import NamedTuple

from openvpc.packet.checksum import checksum
from openvpc.packet.errors import Malformed

IPV4 = struct.Struct("!BBHHHBBH4s4s")
IPV4_LEN = 20
FLAG_DF = 0x4000
FLAG_MF = 0x2000
OFFSET_MASK = 0x1FFF
OPT_END = 0
OPT_NOP = 1
OPT_COPIED = 0x80

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_GRE = 47


class IPv4(NamedTuple):
    header_len: int
    tos: int
    total_length: int
    ident: int
    flags_frag: int
    ttl: int
    proto: int
    checksum: int
    src: bytes
    dst: bytes

    @property
    def df(self) -> bool:
        return bool(self.flags_frag & FLAG_DF)

    @property
    def is_fragment(self) -> bool:
        return bool(self.flags_frag & (FLAG_MF | OFFSET_MASK))

    @property
    def frag_offset(self) -> int:
        return self.flags_frag & OFFSET_MASK


def parse_ipv4(buf: bytes | memoryview, offset: int = 0, verify: bool = True) -> IPv4:
    """Parse the IPv4 header at `offset`; the buffer must hold the whole datagram."""
    if len(buf) - offset < IPV4_LEN:
        raise Malformed("short_ipv4")
    fields = IPV4.unpack_from(buf, offset)
    ver_ihl, total_length = fields[0], fields[2]
    if ver_ihl >> 4 != 4:
        raise Malformed("ipv4_bad_version")
    hlen = (ver_ihl & 0x0F) * 4
    if hlen < IPV4_LEN or total_length < hlen:
        raise Malformed("ipv4_bad_length")
    if len(buf) - offset < total_length:
        raise Malformed("short_ipv4")
    if verify and checksum(buf[offset : offset + hlen]) != 0:
        raise Malformed("ipv4_bad_checksum")
    return IPv4(hlen, *fields[1:])


def build_ipv4(
    src: bytes,
    dst: bytes,
    proto: int,
    payload: bytes,
    ttl: int = 64,
    tos: int = 0,
    ident: int = 0,
    df: bool = False,
    mf: bool = False,
    frag_offset: int = 0,
    options: bytes = b"",
) -> bytes:
    """An IPv4 datagram with length and header checksum filled in."""
    if len(options) % 4:
        raise ValueError("IPv4 options must be a multiple of 4 bytes")
    hlen = IPV4_LEN + len(options)
    flags = (FLAG_DF if df else 0) | (FLAG_MF if mf else 0) | (frag_offset & OFFSET_MASK)
    header = bytearray(
        IPV4.pack(0x40 | hlen // 4, tos, hlen + len(payload), ident, flags, ttl, proto, 0, src, dst)
    )
    header += options
    struct.pack_into("!H", header, 10, checksum(header))
    return bytes(header) + payload


def fragment(packet: bytes, mtu: int) -> list[bytes]:
    """Split an IPv4 datagram into fragments of at most `mtu` bytes (RFC 791)."""
    h = parse_ipv4(packet, verify=False)
    if h.total_length <= mtu:
        return [packet[: h.total_length]]
    header = packet[: h.header_len]
    later_header = header[:IPV4_LEN] + _copied_options_only(header[IPV4_LEN:])
    payload = packet[h.header_len : h.total_length]
    step = (mtu - h.header_len) // 8 * 8
    if step <= 0:
        raise ValueError(f"MTU {mtu} too small to fragment")
    base = h.frag_offset
    last_mf = bool(h.flags_frag & FLAG_MF)
    out = []
    for start in range(0, len(payload), step):
        chunk = payload[start : start + step]
        more = start + step < len(payload) or last_mf
        frag = bytearray((later_header if start else header) + chunk)
        flags = (h.flags_frag & FLAG_DF) | (FLAG_MF if more else 0) | (base + start // 8)
        struct.pack_into("!HH", frag, 2, len(frag), h.ident)
        struct.pack_into("!H", frag, 6, flags)
        struct.pack_into("!H", frag, 10, 0)
        struct.pack_into("!H", frag, 10, checksum(frag[: h.header_len]))
        out.append(bytes(frag))
    return out


def _copied_options_only(options: bytes) -> bytes:
    """`options` with each option whose copied flag is clear overwritten by NOPs (RFC 791).

    An option list that does not parse is left as it is from the bad option on.
    """
    out = bytearray(options)
    i = 0
    while i < len(out):
        kind = out[i]
        if kind == OPT_END:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= len(out) or not 2 <= out[i + 1] <= len(out) - i:
            break
        length = out[i + 1]
        if not kind & OPT_COPIED:
            out[i : i + length] = bytes((OPT_NOP,)) * length
        i += length
    return bytes(out)


def ip_to_bytes(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def ip_to_str(addr: bytes | int) -> str:
    if type(addr) is bytes and len(addr) == 4:  # the common case, 4x faster than ipaddress
        return f"{addr[0]}.{addr[1]}.{addr[2]}.{addr[3]}"
    return str(ipaddress.IPv4Address(addr))
