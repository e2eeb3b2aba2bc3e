"""TAP offloads (IFF_VNET_HDR): the virtio_net_hdr, checksum completion, TCPv4 segmentation of
the super-frames a TAP with TUN_F_CSUM|TUN_F_TSO4 hands over, and the header that passes a
super-frame on whole. Pure."""

import struct
from typing import NamedTuple

from openvpc.packet.checksum import checksum
from openvpc.packet.errors import Malformed
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.gso import TCP_CWR, parse_super, segment
from openvpc.vrouter.limits import MIN_MSS

# the TAP uses the host's byte order for the header (legacy virtio, no TUNSETVNETLE/BE)
VNET_HDR = struct.Struct("=BBHHHH")
VNET_HDR_LEN = VNET_HDR.size
F_NEEDS_CSUM = 1  # the checksum at csum_start + csum_offset holds only the pseudo-header sum
F_DATA_VALID = 2  # checksums verified (or not needed): the receiver skips them
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_ECN = 0x80
_U16 = struct.Struct("!H")
_UDP_CSUM_OFFSET = 6
_TCP_CSUM_OFFSET = 16


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
# what goes in front of a whole frame sent on the fabric's AF_PACKET socket
NO_VNET_HDR = build_vnet_hdr()


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
    """Cut a TCPv4 super-frame from a VM into frames carrying at most `mss` payload bytes each
    (see `gso.segment`); a segment size below the minimum MSS is refused."""
    if mss < MIN_MSS:
        raise Malformed(Drop.GSO_SIZE_INVALID)
    return segment(frame, mss, parse_super(frame))


def tap_super(data: bytes) -> tuple[bytes, int] | None:
    """The TCPv4 super-frame and its MSS in one TAP read, or None for anything else."""
    hdr = parse_vnet_hdr(data)
    if hdr.gso_type & ~GSO_ECN != GSO_TCPV4:
        return None
    return data[VNET_HDR_LEN:], hdr.gso_size


def super_vnet_hdr(frame: bytes, mss: int) -> bytes:
    """The vnet header that hands a TCPv4 super-frame (tagged or not) on whole: to be cut
    into `mss` segments, its TCP checksum completed from the pseudo-header sum it holds."""
    sup = parse_super(frame, tagged=True)
    gso = GSO_TCPV4 | (GSO_ECN if sup.flags & TCP_CWR else 0)  # CWR on the first only
    return build_vnet_hdr(F_NEEDS_CSUM, gso, sup.payload, mss, sup.l4, _TCP_CSUM_OFFSET)


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
