"""DHCP (RFC 2131/2132) messages as a server sees them: BOOTP fixed part, magic cookie, options.

Repeated options are concatenated (RFC 3396) and sname/file are read when overloaded (option 52).
"""

import struct
from collections.abc import Sequence
from typing import NamedTuple

from openvpc.packet.errors import Malformed

BOOTP = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s4s")
BOOTP_LEN = 236  # the fixed part, up to and excluding the magic cookie
OPTIONS_OFFSET = 240
SNAME_OFFSET = 44
FILE_OFFSET = 108
MIN_LEN = 300  # the BOOTP minimum: 236 bytes plus a 64-byte vendor area
MAGIC_COOKIE = b"\x63\x82\x53\x63"
ZERO_IP = b"\x00" * 4

SERVER_PORT = 67
CLIENT_PORT = 68
BOOTREQUEST = 1
BOOTREPLY = 2
FLAG_BROADCAST = 0x8000

# message types (option 53)
DISCOVER = 1
OFFER = 2
REQUEST = 3
DECLINE = 4
ACK = 5
NAK = 6
RELEASE = 7
INFORM = 8

# option codes
PAD = 0
SUBNET_MASK = 1
ROUTER = 3
DNS = 6
HOSTNAME = 12
DOMAIN_NAME = 15
MTU = 26
BROADCAST = 28
REQUESTED_IP = 50
LEASE_TIME = 51
OVERLOAD = 52
MSG_TYPE = 53
SERVER_ID = 54
PARAM_LIST = 55
END = 255


class Dhcp(NamedTuple):
    op: int
    htype: int
    hlen: int
    xid: int
    secs: int
    flags: int
    ciaddr: bytes
    yiaddr: bytes
    siaddr: bytes
    giaddr: bytes
    chaddr: bytes  # the first 6 bytes of the 16-byte field: an Ethernet MAC
    options: dict[int, bytes]

    @property
    def msg_type(self) -> int | None:
        """The DHCP message type (option 53), or None for plain BOOTP."""
        value = self.options.get(MSG_TYPE)
        return value[0] if value else None


def _parse_options(buf: bytes | memoryview, start: int, end: int, out: dict[int, bytes]) -> None:
    """Add the options in buf[start:end] to `out`, concatenating repeats (RFC 3396)."""
    i = start
    while i < end:
        code = buf[i]
        if code == END:
            return
        if code == PAD:
            i += 1
            continue
        if i + 2 > end or i + 2 + buf[i + 1] > end:
            raise Malformed("dhcp_bad_option")
        length = buf[i + 1]
        out[code] = out.get(code, b"") + bytes(buf[i + 2 : i + 2 + length])
        i += 2 + length


def parse_dhcp(payload: bytes | memoryview) -> Dhcp:
    """Parse a DHCP message (a UDP payload); BOOTP without the magic cookie is malformed."""
    if len(payload) < OPTIONS_OFFSET:
        raise Malformed("short_dhcp")
    fields = BOOTP.unpack_from(payload, 0)
    op, htype, hlen, _hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr = fields[:12]
    cookie = fields[14]
    if cookie != MAGIC_COOKIE:
        raise Malformed("dhcp_bad_cookie")
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise Malformed("dhcp_bad_op")
    options: dict[int, bytes] = {}
    _parse_options(payload, OPTIONS_OFFSET, len(payload), options)
    overload = options.get(OVERLOAD, b"\x00")
    if len(overload) != 1:
        raise Malformed("dhcp_bad_overload")
    if overload[0] & 1:
        _parse_options(payload, FILE_OFFSET, FILE_OFFSET + 128, options)
    if overload[0] & 2:
        _parse_options(payload, SNAME_OFFSET, SNAME_OFFSET + 64, options)
    if len(options.get(MSG_TYPE, b"\x00")) != 1:
        raise Malformed("dhcp_bad_msg_type")
    return Dhcp(
        op, htype, hlen, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr[:6], options
    )


def build_dhcp(
    op: int,
    xid: int,
    chaddr: bytes,
    yiaddr: bytes = ZERO_IP,
    siaddr: bytes = ZERO_IP,
    ciaddr: bytes = ZERO_IP,
    giaddr: bytes = ZERO_IP,
    flags: int = 0,
    options: Sequence[tuple[int, bytes]] = (),
) -> bytes:
    """A DHCP message over Ethernet: options in the given order, END, then padding to 300 bytes.

    A value longer than 255 bytes is split into several instances of its option (RFC 3396).
    """
    if len(chaddr) != 6:
        raise ValueError("chaddr must be a 6-byte MAC address")
    out = bytearray(
        BOOTP.pack(
            op,
            1,
            6,
            0,
            xid,
            0,
            flags,
            ciaddr,
            yiaddr,
            siaddr,
            giaddr,
            chaddr,
            b"",
            b"",
            MAGIC_COOKIE,
        )
    )
    for code, value in options:
        if not PAD < code < END:
            raise ValueError(f"DHCP option code out of range: {code}")
        if not value:
            out += bytes((code, 0))
        for start in range(0, len(value), 255):
            chunk = value[start : start + 255]
            out += bytes((code, len(chunk))) + chunk
    out.append(END)
    if len(out) < MIN_LEN:
        out += bytes(MIN_LEN - len(out))
    return bytes(out)
