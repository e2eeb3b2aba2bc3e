"""RFC 1071 internet checksum, computed with big-integer arithmetic rather than a Python loop."""

import struct

_HEADER20 = struct.Struct("!10H")  # a plain IPv4 header: the hot case, summed in one unpack


def fold(total: int) -> int:
    """Add the carries of a sum of 16-bit words back in until it fits 16 bits."""
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def ones_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """One's-complement 16-bit sum of `data` (network order) plus `initial`, folded."""
    if len(data) == 20:
        return fold(sum(_HEADER20.unpack(data)) + initial)
    # 2**16 is 1 modulo 0xFFFF, so the sum of the 16-bit words is the number they spell
    # modulo 0xFFFF: one C-level pass, about 5x faster than summing an array of words
    value = int.from_bytes(data, "big")
    if len(data) % 2:
        value <<= 8  # the odd byte is the high half of a last word padded with zero
    total = value % 0xFFFF
    if total == 0 and value:
        total = 0xFFFF  # a nonzero sum of words never folds to +0
    return fold(total + initial)


def checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The internet checksum of `data`; `initial` is a pseudo-header sum."""
    return ~ones_sum(data, initial) & 0xFFFF


def pseudo_header_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Sum of the IPv4 pseudo-header used by the UDP and TCP checksums."""
    return ones_sum(src + dst + bytes((0, proto)) + length.to_bytes(2, "big"))
