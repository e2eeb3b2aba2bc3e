"""The framing of pkt0, the TAP between the eBPF fast path and this process (its slow path):
a virtio_net_hdr (the TAP's IFF_VNET_HDR), then `struct slow_hdr` of layout.h, then the
frame. Up: the input vif and why the fast path passed the frame on; down: the output vif.
Pure."""

from dataclasses import dataclass

from openvpc.packet.errors import Malformed
from openvpc.vrouter.ebpf import layout as L
from openvpc.vrouter.ebpf.layout import SLOW_ETH_P, SlowReason
from openvpc.vrouter.offload import (
    F_NEEDS_CSUM,
    GSO_ECN,
    GSO_NONE,
    GSO_TCPV4,
    TO_TAP_HDR,
    VNET_HDR,
    VNET_HDR_LEN,
    complete_checksum,
    parse_vnet_hdr,
    super_vnet_hdr,
)

SLOW_HDR = L.SLOW_HDR.struct  # dst MAC, src MAC, ethertype, vif, reason, pad: 22 bytes
SLOW_HDR_LEN = SLOW_HDR.size
_NO_MAC = bytes(6)
_SLOW_PROTO = SLOW_ETH_P.to_bytes(2, "big")
_TPIDS = (b"\x81\x00", b"\x88\xa8")
_TAG_LEN = 4


@dataclass(frozen=True, slots=True)
class SlowFrame:
    """One frame the fast path sent up: from `vif` (the fabric's for fabric frames), for
    `reason` (a SlowReason value, or another number a newer program sent), and for a TCP
    super-frame its segment size `mss` (else 0)."""

    vif: int
    reason: int
    frame: bytes
    mss: int = 0


def slow_hdr(vif: int, reason: int = SlowReason.INJECT) -> bytes:
    return SLOW_HDR.pack(_NO_MAC, _NO_MAC, SLOW_ETH_P, vif, reason, 0)


def parse_slow_hdr(data: bytes | memoryview) -> tuple[int, int]:
    """(vif, reason) of a buffer that starts with a slow_hdr; Malformed if it does not."""
    if len(data) < SLOW_HDR_LEN:
        raise Malformed("slow_hdr_short")
    _, _, proto, vif, reason, _ = SLOW_HDR.unpack_from(data, 0)
    if proto != SLOW_ETH_P:
        raise Malformed("slow_hdr_bad_proto")
    return vif, reason


def _untag(data: bytes) -> bytes:
    """Move back into the frame an 802.1Q tag the TAP wrote into our header. A fabric frame's
    tag sits in skb metadata until the TAP hands the skb over; it then inserts it 12 bytes in,
    where an Ethernet header's ethertype would be: inside the slow_hdr."""
    at = VNET_HDR_LEN + 12
    tagged = len(data) >= VNET_HDR_LEN + SLOW_HDR_LEN + _TAG_LEN
    if not tagged or data[at : at + 2] not in _TPIDS or data[at + 4 : at + 6] != _SLOW_PROTO:
        return data
    tag = data[at : at + _TAG_LEN]
    hdr_end = VNET_HDR_LEN + SLOW_HDR_LEN + _TAG_LEN
    frame = data[hdr_end:]
    return data[:at] + data[at + _TAG_LEN : hdr_end] + frame[:12] + tag + frame[12:]


def from_pkt0(data: bytes) -> SlowFrame:
    """What one read of pkt0 carries: a TCPv4 super-frame is kept whole (with its MSS); a
    frame whose checksum the kernel left to the receiver gets it completed. Malformed for a
    short or foreign header or an offload we cannot take."""
    hdr = parse_vnet_hdr(data)
    data = _untag(data)
    vif, reason = parse_slow_hdr(memoryview(data)[VNET_HDR_LEN:])
    frame = data[VNET_HDR_LEN + SLOW_HDR_LEN :]
    gso = hdr.gso_type & ~GSO_ECN
    if gso == GSO_TCPV4:
        return SlowFrame(vif, reason, frame, hdr.gso_size)
    if gso != GSO_NONE:
        raise Malformed("gso_unsupported")
    if hdr.flags & F_NEEDS_CSUM:
        # the kernel counts csum_start from the start of what it hands over: our header too
        buf = bytearray(frame)
        complete_checksum(buf, hdr.csum_start - SLOW_HDR_LEN, hdr.csum_offset)
        frame = bytes(buf)
    return SlowFrame(vif, reason, frame)


def to_pkt0(vif: int, frame: bytes, mss: int = 0) -> tuple[bytes, bytes, bytes]:
    """The buffers of one pkt0 write sending `frame` out of `vif` (a TCP super-frame whole,
    to be cut into `mss` segments): vnet header, slow_hdr, frame."""
    if not mss:
        return TO_TAP_HDR, slow_hdr(vif), frame
    flags, gso, hdr_len, size, start, offset = VNET_HDR.unpack(super_vnet_hdr(frame, mss))
    vnet = VNET_HDR.pack(flags, gso, hdr_len + SLOW_HDR_LEN, size, start + SLOW_HDR_LEN, offset)
    return vnet, slow_hdr(vif), frame
