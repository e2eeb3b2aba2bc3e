"""Overlay headers: GRE (RFC 2784/2890), MPLS label stack entries (RFC 3032), VXLAN (RFC 7348)."""

import struct
from typing import NamedTuple

from openvpc.packet.errors import Malformed

GRE = struct.Struct("!HH")
GRE_LEN = 4
GRE_C = 0x8000
GRE_K = 0x2000
GRE_S = 0x1000
GRE_VERSION = 0x0007

MPLS = struct.Struct("!I")
MPLS_LEN = 4
MAX_LABEL = 0xFFFFF

VXLAN = struct.Struct("!II")
VXLAN_LEN = 8
VXLAN_I = 0x08000000

UDP_PORT_VXLAN = 4789
UDP_PORT_MPLS = 6635
UDP_PORT_MPLS_LEGACY = 51234


class Gre(NamedTuple):
    protocol: int
    key: int | None
    header_len: int


class MplsEntry(NamedTuple):
    label: int
    tc: int
    bos: bool
    ttl: int


def parse_gre(buf: bytes | memoryview, offset: int = 0) -> Gre:
    """Parse a GRE header; checksum, key and sequence fields are skipped over."""
    if len(buf) - offset < GRE_LEN:
        raise Malformed("short_gre")
    flags, protocol = GRE.unpack_from(buf, offset)
    if flags & GRE_VERSION:
        raise Malformed("gre_bad_version")
    hlen = GRE_LEN + (4 if flags & GRE_C else 0)
    key = None
    if flags & GRE_K:
        if len(buf) - offset < hlen + 4:
            raise Malformed("short_gre")
        key = struct.unpack_from("!I", buf, offset + hlen)[0]
        hlen += 4
    hlen += 4 if flags & GRE_S else 0
    if len(buf) - offset < hlen:
        raise Malformed("short_gre")
    return Gre(protocol, key, hlen)


def build_gre(protocol: int, key: int | None = None) -> bytes:
    if key is None:
        return GRE.pack(0, protocol)
    return GRE.pack(GRE_K, protocol) + struct.pack("!I", key)


def parse_mpls(buf: bytes | memoryview, offset: int = 0) -> MplsEntry:
    if len(buf) - offset < MPLS_LEN:
        raise Malformed("short_mpls")
    (word,) = MPLS.unpack_from(buf, offset)
    return MplsEntry(word >> 12, (word >> 9) & 0x7, bool(word & 0x100), word & 0xFF)


def parse_mpls_stack(buf: bytes | memoryview, offset: int = 0) -> tuple[list[MplsEntry], int]:
    """All entries up to bottom-of-stack, and the offset of the payload after them."""
    stack = []
    while True:
        entry = parse_mpls(buf, offset)
        stack.append(entry)
        offset += MPLS_LEN
        if entry.bos:
            return stack, offset
        if len(stack) >= 8:
            raise Malformed("mpls_stack_too_deep")


def build_mpls(label: int, ttl: int = 64, tc: int = 0, bos: bool = True) -> bytes:
    if not 0 <= label <= MAX_LABEL:
        raise ValueError(f"MPLS label out of range: {label}")
    if not 0 <= tc <= 7:
        raise ValueError(f"MPLS traffic class out of range: {tc}")
    return MPLS.pack((label << 12) | (tc << 9) | (0x100 if bos else 0) | (ttl & 0xFF))


def build_mpls_stack(labels: list[int], ttl: int = 64) -> bytes:
    return b"".join(build_mpls(lb, ttl, bos=i == len(labels) - 1) for i, lb in enumerate(labels))


def parse_vxlan(buf: bytes | memoryview, offset: int = 0) -> int:
    """The VNI of a VXLAN header; a header without the I flag is malformed."""
    if len(buf) - offset < VXLAN_LEN:
        raise Malformed("short_vxlan")
    flags: int
    vni: int
    flags, vni = VXLAN.unpack_from(buf, offset)
    if not flags & VXLAN_I:
        raise Malformed("vxlan_no_vni_flag")
    return vni >> 8


def build_vxlan(vni: int) -> bytes:
    if not 0 <= vni < 1 << 24:
        raise ValueError(f"VNI out of range: {vni}")
    return VXLAN.pack(VXLAN_I, vni << 8)
