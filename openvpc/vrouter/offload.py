"""TAP offloads (IFF_VNET_HDR): the virtio_net_hdr, checksum completion, and TCPv4 segmentation
of the super-frames a TAP with TUN_F_CSUM|TUN_F_TSO4 hands over, so the pipeline sees MTU-sized
frames with full checksums. Pure."""

import struct
from typing import NamedTuple

from openvpc.packet.checksum import checksum, pseudo_header_sum
from openvpc.packet.errors import Malformed
from openvpc.packet.ethernet import ETH_P_IP, parse_ethernet
from openvpc.packet.ipv4 import PROTO_TCP, parse_ipv4
from openvpc.packet.l4 import parse_tcp

# the TAP uses the host's byte order for the header (legacy virtio, no TUNSETVNETLE/BE)
VNET_HDR = struct.Struct("=BBHHHH")
VNET_HDR_LEN = VNET_HDR.size
F_NEEDS_CSUM = 1  # the checksum at csum_start + csum_offset holds only the pseudo-header sum
F_DATA_VALID = 2  # checksums verified (or not needed): the receiver skips them
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_ECN = 0x80
TCP_FLAG_FIN = 0x01
TCP_FLAG_PSH = 0x08
TCP_FLAG_CWR = 0x80
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_UDP_CSUM_OFFSET = 6


class VnetHdr(NamedTuple):
    flags: int
    gso_type: int
    hdr_len: int
    gso_size: int
    csum_start: int
    csum_offset: int


def parse_vnet_hdr(buf: bytes | memoryview) -> VnetHdr:
    if len(buf) < VNET_HDR_LEN:
        raise Malformed("short_vnet_hdr")
    return VnetHdr(*VNET_HDR.unpack_from(buf, 0))


def build_vnet_hdr(
    flags: int = 0,
    gso_type: int = GSO_NONE,
    hdr_len: int = 0,
    gso_size: int = 0,
    csum_start: int = 0,
    csum_offset: int = 0,
) -> bytes:
    return VNET_HDR.pack(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


# what the vRouter puts in front of every frame it writes to a TAP: whole, checksums valid
TO_TAP_HDR = build_vnet_hdr(F_DATA_VALID)


def complete_checksum(frame: bytearray, start: int, offset: int) -> None:
    """Finish a partial checksum in place: sum from `start` to the end, store at start+offset."""
    at = start + offset
    if start < 0 or at + 2 > len(frame) or offset < 0:
        raise Malformed("vnet_bad_csum_offset")
    csum = checksum(memoryview(frame)[start:])
    if csum == 0 and offset == _UDP_CSUM_OFFSET:
        csum = 0xFFFF  # a zero UDP checksum would mean "none"
    _U16.pack_into(frame, at, csum)


def segment_tcp4(frame: bytes, mss: int) -> list[bytes]:
    """Cut a TCPv4 super-frame into frames carrying at most `mss` payload bytes each.

    Each gets its own IPv4 id (consecutive), length and checksum, TCP sequence number and
    checksum; FIN and PSH stay on the last segment only, CWR on the first only.
    """
    if mss <= 0:
        raise Malformed("gso_bad_size")
    eth = parse_ethernet(frame)
    if eth.ethertype != ETH_P_IP or eth.vlan is not None:
        raise Malformed("gso_not_ipv4")
    p = eth.offset
    ip = parse_ipv4(frame, p, verify=False)
    if ip.proto != PROTO_TCP or ip.is_fragment:
        raise Malformed("gso_not_tcp")
    packet = frame[p : p + ip.total_length]
    tcp = parse_tcp(packet, ip.header_len)
    headers = ip.header_len + tcp.header_len
    if headers > len(packet):
        raise Malformed("gso_short_tcp")
    payload = memoryview(packet)[headers:]
    count = max(1, (len(payload) + mss - 1) // mss)
    eth_header = frame[:p]
    ip_header = bytearray(packet[: ip.header_len])
    tcp_header = bytearray(packet[ip.header_len : headers])
    flags = tcp.flags
    out = []
    for i in range(count):
        chunk = payload[i * mss : (i + 1) * mss]
        seg_flags = flags
        if i < count - 1:
            seg_flags &= ~(TCP_FLAG_FIN | TCP_FLAG_PSH)
        if i > 0:
            seg_flags &= ~TCP_FLAG_CWR
        _U16.pack_into(ip_header, 2, headers + len(chunk))
        _U16.pack_into(ip_header, 4, (ip.ident + i) & 0xFFFF)
        _U16.pack_into(ip_header, 10, 0)
        _U16.pack_into(ip_header, 10, checksum(ip_header))
        _U32.pack_into(tcp_header, 4, (tcp.seq + i * mss) & 0xFFFFFFFF)
        tcp_header[13] = seg_flags
        _U16.pack_into(tcp_header, 16, 0)
        segment = bytes(tcp_header) + chunk
        csum = checksum(segment, pseudo_header_sum(ip.src, ip.dst, PROTO_TCP, len(segment)))
        out.append(eth_header + bytes(ip_header) + segment[:16] + _U16.pack(csum) + segment[18:])
    return out


def frames_from_tap(data: bytes) -> list[bytes]:
    """What one TAP read (vnet header + frame) becomes: whole frames with full checksums."""
    hdr = parse_vnet_hdr(data)
    frame = data[VNET_HDR_LEN:]
    gso = hdr.gso_type & ~GSO_ECN
    if gso == GSO_TCPV4:
        return segment_tcp4(frame, hdr.gso_size)
    if gso != GSO_NONE:
        raise Malformed("gso_unsupported")
    if hdr.flags & F_NEEDS_CSUM:
        buf = bytearray(frame)
        complete_checksum(buf, hdr.csum_start, hdr.csum_offset)
        return [bytes(buf)]
    return [frame]
