"""TCPv4 super-frames (what a TAP with TSO hands over, or segments coalesced on receive):
parsed once, cut into MSS segments with full checksums, or built back from segments (GRO). Pure.
"""

import struct
from collections.abc import Callable, Sequence
from typing import NamedTuple

from openvpc.packet.checksum import checksum, fold, ones_sum, pseudo_header_sum
from openvpc.packet.errors import Malformed
from openvpc.packet.ethernet import ETH_LEN, ETH_P_IP, parse_ethernet
from openvpc.packet.ipv4 import FLAG_DF, PROTO_TCP, parse_ipv4
from openvpc.packet.l4 import TCP_ACK, TCP_FIN, TCP_PSH, parse_tcp
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.limits import SEGMENT_CAP

TCP_CWR = 0x80
TCP_ECE = 0x40
MAX_IP_LEN = 0xFFFF
MAX_SEGMENTS = 64  # what one coalesced super-frame may hold (Linux GRO's limit too)
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_IP_TYPE = ETH_P_IP.to_bytes(2, "big")
_IP_FIELDS = struct.Struct("!HH")  # total length, identification
# flags a segment may carry and still be coalesced with its neighbours
_MERGEABLE = TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR | TCP_ECE
_LAST_ONLY = TCP_FIN | TCP_PSH  # segmentation keeps these on the last segment only


class TcpSuper(NamedTuple):
    """Where the headers of a TCPv4 frame are, and the fields segmentation rewrites."""

    l3: int  # offset of the IPv4 header (after Ethernet and any 802.1Q tag)
    l4: int  # offset of the TCP header
    payload: int  # offset of the TCP payload
    end: int  # where the IP packet ends in the frame
    ident: int
    seq: int
    flags: int
    src: bytes
    dst: bytes

    @property
    def payload_len(self) -> int:
        return self.end - self.payload

    def count(self, mss: int) -> int:
        """How many segments of at most `mss` payload bytes the frame makes."""
        return max(1, -(-self.payload_len // mss))

    def packet_bytes(self, mss: int) -> int:
        """The IP bytes of all its segments together (each carries the IP and TCP headers)."""
        return self.count(mss) * (self.payload - self.l3) + self.payload_len


def parse_super(frame: bytes, tagged: bool = False) -> TcpSuper:
    """The layout of an Ethernet + IPv4 + TCP frame; one 802.1Q tag only when `tagged`."""
    eth = parse_ethernet(frame)
    if eth.ethertype != ETH_P_IP or (eth.vlan is not None and not tagged):
        raise Malformed("gso_not_ipv4")
    return parse_tcp4(frame, eth.offset)


def parse_tcp4(buf: bytes, l3: int) -> TcpSuper:
    """The layout of the IPv4 + TCP packet at offset `l3` of `buf`."""
    ip = parse_ipv4(buf, l3, verify=False)
    if ip.proto != PROTO_TCP or ip.is_fragment:
        raise Malformed("gso_not_tcp")
    end = l3 + ip.total_length
    l4 = l3 + ip.header_len
    tcp = parse_tcp(memoryview(buf)[:end], l4)
    return TcpSuper(l3, l4, l4 + tcp.header_len, end, ip.ident, tcp.seq, tcp.flags, ip.src, ip.dst)


def segment(frame: bytes, mss: int, sup: TcpSuper | None = None) -> list[bytes]:
    """Cut a TCPv4 super-frame into frames carrying at most `mss` payload bytes each (the
    frame may also be a bare IPv4 packet, with `sup` from `parse_tcp4(frame, 0)`).

    Each gets its own IPv4 id (consecutive), length and checksum, TCP sequence number and
    checksum; FIN and PSH stay on the last segment only, CWR on the first only. Whatever the
    super-frame's TCP checksum field held (often only the pseudo-header sum) is ignored.
    """
    if mss <= 0:
        raise Malformed(Drop.GSO_SIZE_INVALID)
    if sup is None:
        sup = parse_super(frame)
    if sup.count(mss) > SEGMENT_CAP:  # the callers check their own bounds; this is the last
        raise Malformed(Drop.GSO_TOO_MANY_SEGMENTS)
    head = bytearray(frame[: sup.l4])  # Ethernet (and tag) and the IPv4 header
    tcp = bytearray(frame[sup.l4 : sup.payload])
    payload = memoryview(frame)[sup.payload : sup.end]
    l3, thlen = sup.l3, len(tcp)
    headers = sup.payload - l3
    count = sup.count(mss)
    # the sums of the fixed parts, taken once: per segment only the changing fields are
    # added (one's-complement addition commutes, RFC 1624)
    head[l3 + 2 : l3 + 6] = bytes(4)
    head[l3 + 10 : l3 + 12] = bytes(2)
    ip_base = ones_sum(memoryview(head)[l3:])
    tcp[4:8] = bytes(4)
    tcp[16:18] = bytes(2)
    tcp[13] = 0
    tcp_base = ones_sum(tcp, ones_sum(sup.src + sup.dst, PROTO_TCP + thlen))
    out = []
    for i in range(count):
        chunk = payload[i * mss : (i + 1) * mss]
        flags = sup.flags
        if i < count - 1:
            flags &= ~_LAST_ONLY
        if i > 0:
            flags &= ~TCP_CWR
        ident = (sup.ident + i) & 0xFFFF
        seq = (sup.seq + i * mss) & 0xFFFFFFFF
        size = len(chunk)
        _IP_FIELDS.pack_into(head, l3 + 2, headers + size, ident)
        _U16.pack_into(head, l3 + 10, ~fold(ip_base + headers + size + ident) & 0xFFFF)
        _U32.pack_into(tcp, 4, seq)
        tcp[13] = flags
        # the header is a whole number of words, so the payload's sum adds on unshifted
        total = ones_sum(chunk, tcp_base + (seq >> 16) + (seq & 0xFFFF) + flags + size)
        _U16.pack_into(tcp, 16, ~total & 0xFFFF)
        out.append(b"".join((head, tcp, chunk)))
    return out


def partial_checksum(sup: TcpSuper) -> int:
    """What a TCP checksum field holds while the checksum is left to be completed
    (NEEDS_CSUM / CHECKSUM_PARTIAL): the pseudo-header sum over the whole TCP length."""
    return ones_sum(b"", pseudo_header_sum(sup.src, sup.dst, PROTO_TCP, sup.end - sup.l4))


class Coalesced(NamedTuple):
    """A super-frame and the segments it was built from, or a buffer left alone (mss 0)."""

    data: bytes
    mss: int
    parts: tuple[bytes, ...]


class _Run:
    """Segments being coalesced: the first one's layout and every segment. A segment joins
    by a few field reads and slice comparisons against the first, with no parse of its own."""

    __slots__ = (
        "first",
        "ident",
        "ip_len",
        "last_flags",
        "mid_flags",
        "mss",
        "next_seq",
        "open",
        "parts",
        "sup",
    )

    def __init__(self, buf: bytes, sup: TcpSuper) -> None:
        self.first = buf
        self.sup = sup
        self.mss = sup.payload_len
        self.parts = [buf]
        self.ident = sup.ident
        self.next_seq = (sup.seq + self.mss) & 0xFFFFFFFF
        self.ip_len = sup.end - sup.l3
        self.last_flags = sup.flags
        self.mid_flags = sup.flags & ~TCP_CWR  # what segmentation leaves on later segments
        self.open = not sup.flags & _LAST_ONLY

    def take(self, buf: bytes) -> bool:
        """Add `buf` if it is the next segment of the run."""
        s, first = self.sup, self.first
        l3, l4, start = s.l3, s.l4, s.payload
        size = len(buf) - start
        if not self.open or not 0 < size <= self.mss or self.ip_len + size > MAX_IP_LEN:
            return False
        total, ident = _IP_FIELDS.unpack_from(buf, l3 + 2)
        seq = _U32.unpack_from(buf, l4 + 4)[0]
        flags = buf[l4 + 13]
        if (
            total != len(buf) - l3
            or ident != (self.ident + 1) & 0xFFFF
            or seq != self.next_seq
            or flags & ~_LAST_ONLY != self.mid_flags
        ):
            return False
        # everything else must be the same: what precedes the IPv4 header (Ethernet, tunnel
        # header), IPv4 fields but length, id and checksum, TCP ports, ack, offset, window,
        # options; equal version, header and data offset bytes mean an equal layout
        if not (
            buf[: l3 + 2] == first[: l3 + 2]
            and buf[l3 + 6 : l3 + 10] == first[l3 + 6 : l3 + 10]
            and buf[l3 + 12 : l4 + 4] == first[l3 + 12 : l4 + 4]
            and buf[l4 + 8 : l4 + 13] == first[l4 + 8 : l4 + 13]
            and buf[l4 + 14 : l4 + 16] == first[l4 + 14 : l4 + 16]
            and buf[l4 + 18 : start] == first[l4 + 18 : start]
        ):
            return False
        self.parts.append(buf)
        self.ident = ident
        self.next_seq = (seq + size) & 0xFFFFFFFF
        self.ip_len += size
        self.last_flags = flags
        # a short segment or PSH/FIN ends the run, as in segmentation
        self.open = size == self.mss and not flags & _LAST_ONLY
        if len(self.parts) >= MAX_SEGMENTS:
            self.open = False
        return True

    def build(self) -> Coalesced:
        if len(self.parts) == 1:
            return Coalesced(self.first, 0, (self.first,))
        s = self.sup
        head = bytearray(self.first[: s.payload])
        _U16.pack_into(head, s.l3 + 2, self.ip_len)
        _U16.pack_into(head, s.l3 + 10, 0)
        _U16.pack_into(head, s.l3 + 10, checksum(memoryview(head)[s.l3 : s.l4]))
        head[s.l4 + 13] = s.flags | (self.last_flags & _LAST_ONLY)
        _U16.pack_into(head, s.l4 + 16, partial_checksum(s._replace(end=s.l3 + self.ip_len)))
        start, end = s.payload, s.end
        payloads = [memoryview(part)[start:] for part in self.parts]
        payloads[0] = payloads[0][: end - start]
        return Coalesced(b"".join((head, *payloads)), self.mss, tuple(self.parts))


def coalesce(buffers: Sequence[bytes], l3_of: Callable[[bytes], int | None]) -> list[Coalesced]:
    """GRO: merge runs of consecutive in-order TCPv4 segments of one flow into super-frames.

    `l3_of` says where a buffer's IPv4 header starts (after Ethernet, or a tunnel header and
    the inner Ethernet), or None for one to leave alone. Output keeps the input order. A run
    is what `segment` would make again: same headers but for the per-segment fields, ids and
    sequence numbers following on, full-size payloads but the last, PSH/FIN only at the end,
    CWR only at the start. Segment checksums are not verified (nothing on this path verifies
    them: frames reach the VM marked valid either way); the super-frame carries a partial
    checksum to be completed.
    """
    out: list[Coalesced] = []
    run: _Run | None = None
    for buf in buffers:
        if run is not None and run.take(buf):
            continue
        if run is not None:
            out.append(run.build())
            run = None
        sup = _mergeable(buf, l3_of(buf))
        if sup is None:
            out.append(Coalesced(buf, 0, (buf,)))
        else:
            run = _Run(buf, sup)
    if run is not None:
        out.append(run.build())
    return out


def ethernet_l3(frame: bytes) -> int | None:
    """`l3_of` for untagged Ethernet frames."""
    return ETH_LEN if frame[12:14] == _IP_TYPE else None


def _mergeable(buf: bytes, l3: int | None) -> TcpSuper | None:
    """The layout of a TCPv4 data segment at `l3` that GRO may merge, else None."""
    if l3 is None or len(buf) < l3 + 40 or buf[l3 + 9] != PROTO_TCP:
        return None
    try:
        sup = parse_tcp4(buf, l3)
    except Malformed:
        return None
    flags_frag = _U16.unpack_from(buf, l3 + 6)[0]
    if (
        sup.payload_len == 0
        or sup.flags & ~_MERGEABLE
        or not sup.flags & TCP_ACK
        or flags_frag & ~FLAG_DF
        or sup.end != len(buf)  # Ethernet padding or trailing bytes: leave it alone
    ):
        return None
    return sup
