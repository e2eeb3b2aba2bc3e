"""RFC 1071 internet checksum, computed with array sums rather than a Python loop."""

import struct
import sys
from array import array

_LITTLE = sys.byteorder == "little"
_HEADER20 = struct.Struct("!10H")  # a plain IPv4 header: the hot case, summed in one unpack


def _fold(total: int) -> int:
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ones_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """One's-complement 16-bit sum of `data` (network order) plus `initial`, folded."""
    if len(data) == 20:
        return _fold(sum(_HEADER20.unpack(data)) + initial)
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    total = _fold(sum(array("H", bytes(data))))
    if _LITTLE:
        # the one's-complement sum commutes with byte swapping, so sum natively and swap once
        total = ((total & 0xFF) << 8) | (total >> 8)
    return _fold(total + initial)


def checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The internet checksum of `data`; `initial` is a pseudo-header sum."""
    return ~ones_sum(data, initial) & 0xFFFF


def pseudo_header_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Sum of the IPv4 pseudo-header used by the UDP and TCP checksums."""
    return ones_sum(src + dst + bytes((0, proto)) + length.to_bytes(2, "big"))
