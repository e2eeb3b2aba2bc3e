"""Parsers on truncated, corrupted and random input raise Malformed and nothing else."""

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openvpc.packet import dhcp
from openvpc.packet.arp import ARP_REQUEST, build_arp, parse_arp
from openvpc.packet.errors import Malformed
from openvpc.packet.ethernet import ETH_P_IP, build_ethernet, parse_ethernet
from openvpc.packet.ipv4 import PROTO_TCP, PROTO_UDP, build_ipv4, parse_ipv4
from openvpc.packet.l4 import build_icmp, build_tcp, build_udp, parse_icmp, parse_tcp, parse_udp
from openvpc.packet.tunnel import (
    build_gre,
    build_mpls,
    build_mpls_stack,
    build_vxlan,
    parse_gre,
    parse_mpls,
    parse_mpls_stack,
    parse_vxlan,
)

Parser = Callable[[bytes | memoryview, int], object]

IP_A, IP_B = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"
MAC_A, MAC_B = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"


def _dhcp(buf: bytes | memoryview, offset: int) -> object:
    return dhcp.parse_dhcp(buf[offset:])


PARSERS: dict[str, Parser] = {
    "ethernet": lambda b, o: parse_ethernet(b[o:]),
    "arp": parse_arp,
    "ipv4": parse_ipv4,
    "icmp": parse_icmp,
    "udp": parse_udp,
    "tcp": parse_tcp,
    "gre": parse_gre,
    "mpls": parse_mpls,
    "mpls_stack": parse_mpls_stack,
    "vxlan": parse_vxlan,
    "dhcp": _dhcp,
}

# one valid message per parser, and the shortest prefix of it that still parses
VALID: dict[str, tuple[bytes, int]] = {
    "ethernet": (build_ethernet(MAC_A, MAC_B, ETH_P_IP, b"data", vlan=7), 18),
    "arp": (build_arp(ARP_REQUEST, MAC_A, IP_A, bytes(6), IP_B), 28),
    "ipv4": (build_ipv4(IP_A, IP_B, PROTO_UDP, b"payload", options=b"\x01\x01\x01\x00"), 31),
    "icmp": (build_icmp(8, 0, b"\x00\x01\x00\x02", b"ping"), 8),
    "udp": (build_udp(IP_A, IP_B, 1, 2, b"payload"), 15),
    "tcp": (build_tcp(IP_A, IP_B, 1, 2, 0x12, options=b"\x02\x04\x05\xb4", payload=b"xy"), 24),
    "gre": (build_gre(0x6558, key=42), 8),
    "mpls": (build_mpls(16), 4),
    "mpls_stack": (build_mpls_stack([16, 17, 18]), 12),
    "vxlan": (build_vxlan(0x123456), 8),
    "dhcp": (dhcp.build_dhcp(1, 7, MAC_A, options=[(dhcp.MSG_TYPE, b"\x01")]), 240),
}


def parses_or_malformed(parser: Parser, buf: bytes | memoryview, offset: int = 0) -> bool:
    """True when `buf` parses, False when it is Malformed; any other exception propagates."""
    try:
        parser(buf, offset)
    except Malformed as exc:
        assert exc.reason and exc.reason == str(exc)
        return False
    return True


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_valid_messages_parse(name: str) -> None:
    buf, _ = VALID[name]
    assert parses_or_malformed(PARSERS[name], buf)
    assert parses_or_malformed(PARSERS[name], b"pad" + buf, 3)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_truncations_are_malformed(name: str) -> None:
    buf, shortest = VALID[name]
    for cut in range(shortest):
        assert not parses_or_malformed(PARSERS[name], buf[:cut]), cut
        assert not parses_or_malformed(PARSERS[name], b"pad" + buf[:cut], 3), cut
    for cut in range(shortest, len(buf)):  # DHCP may be cut inside an option
        parses_or_malformed(PARSERS[name], buf[:cut])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(PARSERS)), st.binary(max_size=400), st.integers(0, 404))
def test_random_bytes(name: str, buf: bytes, offset: int) -> None:
    assert parses_or_malformed(PARSERS[name], buf, offset) == parses_or_malformed(
        PARSERS[name], memoryview(buf), offset
    )


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(PARSERS)), st.data())
def test_corrupted_valid_messages(name: str, data: st.DataObject) -> None:
    buf = bytearray(VALID[name][0])
    for _ in range(data.draw(st.integers(1, 4))):
        buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(buf)))
    parses_or_malformed(PARSERS[name], bytes(buf[:cut]))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120), st.binary(max_size=128), st.binary(max_size=64))
def test_dhcp_random_options(options: bytes, file: bytes, sname: bytes) -> None:
    # a cookie and then anything, with the sname and file fields possibly overloaded
    msg = bytearray(dhcp.build_dhcp(1, 7, MAC_A))
    msg[44 : 44 + len(sname)] = sname
    msg[108 : 108 + len(file)] = file
    parses_or_malformed(_dhcp, bytes(msg[:240]) + b"\x34\x01\x03" + options)
    parses_or_malformed(_dhcp, bytes(msg[:240]) + options)


def reason(parse: Callable[[], object]) -> str:
    with pytest.raises(Malformed) as info:
        parse()
    return info.value.reason


def with_byte(buf: bytes, index: int, value: int) -> bytes:
    out = bytearray(buf)
    out[index] = value
    return bytes(out)


# ---- specific cases


def test_ethernet_short() -> None:
    assert reason(lambda: parse_ethernet(bytes(13))) == "short_ethernet"
    tagged = build_ethernet(MAC_A, MAC_B, ETH_P_IP, vlan=1)
    assert reason(lambda: parse_ethernet(tagged[:17])) == "short_vlan"


def test_arp_not_ethernet_ipv4() -> None:
    arp = VALID["arp"][0]
    assert reason(lambda: parse_arp(with_byte(arp, 1, 6))) == "arp_not_ipv4_ethernet"  # htype 6
    assert reason(lambda: parse_arp(with_byte(arp, 2, 0x86))) == "arp_not_ipv4_ethernet"
    assert reason(lambda: parse_arp(with_byte(arp, 4, 8))) == "arp_not_ipv4_ethernet"  # hlen 8
    assert reason(lambda: parse_arp(with_byte(arp, 7, 3))) == "arp_bad_op"  # RARP request
    assert reason(lambda: parse_arp(arp[:27])) == "short_arp"


def test_ipv4_version_6() -> None:
    pkt = VALID["ipv4"][0]
    assert reason(lambda: parse_ipv4(with_byte(pkt, 0, 0x66))) == "ipv4_bad_version"


@pytest.mark.parametrize("ihl", [0, 1, 4])
def test_ipv4_ihl_below_5(ihl: int) -> None:
    pkt = build_ipv4(IP_A, IP_B, PROTO_UDP, bytes(40))
    assert reason(lambda: parse_ipv4(with_byte(pkt, 0, 0x40 | ihl))) == "ipv4_bad_length"


def test_ipv4_total_length() -> None:
    pkt = build_ipv4(IP_A, IP_B, PROTO_UDP, bytes(10))
    too_long = pkt[:2] + (len(pkt) + 1).to_bytes(2, "big") + pkt[4:]
    assert reason(lambda: parse_ipv4(too_long, verify=False)) == "short_ipv4"
    shorter_than_header = pkt[:2] + (19).to_bytes(2, "big") + pkt[4:]
    assert reason(lambda: parse_ipv4(shorter_than_header, verify=False)) == "ipv4_bad_length"
    # options say 24 bytes of header, the datagram says 20
    ihl6 = with_byte(build_ipv4(IP_A, IP_B, PROTO_UDP, bytes(10)), 0, 0x46)
    ihl6 = ihl6[:2] + (20).to_bytes(2, "big") + ihl6[4:]
    assert reason(lambda: parse_ipv4(ihl6, verify=False)) == "ipv4_bad_length"


def test_ipv4_trailing_bytes_allowed() -> None:
    # Ethernet pads short frames; the datagram is what total_length says
    pkt = build_ipv4(IP_A, IP_B, PROTO_UDP, b"x")
    assert parse_ipv4(pkt + bytes(20)).total_length == 21


def test_ipv4_bad_checksum() -> None:
    pkt = build_ipv4(IP_A, IP_B, PROTO_TCP, bytes(4))
    bad = with_byte(pkt, 8, pkt[8] ^ 1)  # TTL changed, checksum not
    assert reason(lambda: parse_ipv4(bad)) == "ipv4_bad_checksum"
    assert parse_ipv4(bad, verify=False).ttl == pkt[8] ^ 1
    bad_options = with_byte(VALID["ipv4"][0], 21, 0x44)  # the checksum covers options too
    assert reason(lambda: parse_ipv4(bad_options)) == "ipv4_bad_checksum"


def test_icmp_short() -> None:
    assert reason(lambda: parse_icmp(bytes(7))) == "short_icmp"


def test_udp_length() -> None:
    seg = build_udp(IP_A, IP_B, 1, 2, b"12345")
    assert reason(lambda: parse_udp(seg[:-1])) == "udp_bad_length"
    assert reason(lambda: parse_udp(seg[:4] + b"\x00\x07" + seg[6:])) == "udp_bad_length"
    assert reason(lambda: parse_udp(seg[:7])) == "short_udp"


@pytest.mark.parametrize("data_offset", [0, 1, 4])
def test_tcp_data_offset_below_5(data_offset: int) -> None:
    seg = build_tcp(IP_A, IP_B, 1, 2, 0x02, payload=bytes(40))
    assert reason(lambda: parse_tcp(with_byte(seg, 12, data_offset << 4))) == "tcp_bad_length"


def test_tcp_data_offset_past_buffer() -> None:
    seg = build_tcp(IP_A, IP_B, 1, 2, 0x02)
    assert reason(lambda: parse_tcp(with_byte(seg, 12, 6 << 4))) == "tcp_bad_length"
    assert reason(lambda: parse_tcp(seg[:19])) == "short_tcp"


@pytest.mark.parametrize("version", [1, 7])
def test_gre_version_not_0(version: int) -> None:
    assert reason(lambda: parse_gre(with_byte(build_gre(0x0800), 1, version))) == "gre_bad_version"


def test_gre_short() -> None:
    assert reason(lambda: parse_gre(build_gre(0x0800)[:3])) == "short_gre"
    assert reason(lambda: parse_gre(build_gre(0x0800, key=1)[:7])) == "short_gre"
    checksum_and_seq = b"\x90\x00\x08\x00" + bytes(4)  # C and S set, sequence number missing
    assert reason(lambda: parse_gre(checksum_and_seq)) == "short_gre"


def test_mpls_stack_errors() -> None:
    assert reason(lambda: parse_mpls(bytes(3))) == "short_mpls"
    no_bos = b"".join(build_mpls(16 + i, bos=False) for i in range(3))
    assert reason(lambda: parse_mpls_stack(no_bos)) == "short_mpls"
    too_deep = b"".join(build_mpls(16 + i, bos=False) for i in range(9)) + build_mpls(99)
    assert reason(lambda: parse_mpls_stack(too_deep)) == "mpls_stack_too_deep"


def test_vxlan_without_i_flag() -> None:
    assert reason(lambda: parse_vxlan(with_byte(build_vxlan(5), 0, 0x00))) == "vxlan_no_vni_flag"
    assert reason(lambda: parse_vxlan(with_byte(build_vxlan(5), 0, 0x80))) == "vxlan_no_vni_flag"
    assert reason(lambda: parse_vxlan(build_vxlan(5)[:7])) == "short_vxlan"


def test_dhcp_bad_cookie() -> None:
    msg = VALID["dhcp"][0]
    assert reason(lambda: dhcp.parse_dhcp(with_byte(msg, 239, 0x64))) == "dhcp_bad_cookie"
    bootp = msg[:236] + bytes(64)  # plain BOOTP: vendor area without the cookie
    assert reason(lambda: dhcp.parse_dhcp(bootp)) == "dhcp_bad_cookie"


def test_dhcp_short() -> None:
    assert reason(lambda: dhcp.parse_dhcp(VALID["dhcp"][0][:239])) == "short_dhcp"


def test_dhcp_overlong_option() -> None:
    head = VALID["dhcp"][0][:240]
    assert reason(lambda: dhcp.parse_dhcp(head + b"\x35\x01\x01\x0c\x05abc")) == "dhcp_bad_option"
    assert reason(lambda: dhcp.parse_dhcp(head + b"\x35\x01\x01\x0c")) == "dhcp_bad_option"


def test_dhcp_overlong_option_in_overloaded_file() -> None:
    msg = bytearray(dhcp.build_dhcp(1, 7, MAC_A, options=[(dhcp.OVERLOAD, b"\x01")]))
    msg[108 + 126 : 108 + 128] = b"\x0c\x05"  # runs out of the file field
    assert reason(lambda: dhcp.parse_dhcp(bytes(msg))) == "dhcp_bad_option"


def test_dhcp_bad_fields() -> None:
    msg = VALID["dhcp"][0]
    assert reason(lambda: dhcp.parse_dhcp(with_byte(msg, 0, 3))) == "dhcp_bad_op"
    two_byte_type = msg[:240] + b"\x35\x02\x01\x01\xff"
    assert reason(lambda: dhcp.parse_dhcp(two_byte_type)) == "dhcp_bad_msg_type"
    empty_type = msg[:240] + b"\x35\x00\xff"
    assert reason(lambda: dhcp.parse_dhcp(empty_type)) == "dhcp_bad_msg_type"
    empty_overload = msg[:240] + b"\x34\x00\xff"
    assert reason(lambda: dhcp.parse_dhcp(empty_overload)) == "dhcp_bad_overload"


def test_dhcp_without_end_is_tolerated() -> None:
    # some clients stop at the last option; nothing is lost
    msg = VALID["dhcp"][0][:240] + b"\x35\x01\x03"
    assert dhcp.parse_dhcp(msg).msg_type == dhcp.REQUEST
    assert dhcp.parse_dhcp(VALID["dhcp"][0][:240]).msg_type is None


@pytest.mark.parametrize(
    "build",
    [
        lambda: build_mpls(1 << 20),
        lambda: build_mpls(1, tc=8),
        lambda: build_vxlan(1 << 24),
        lambda: build_ethernet(MAC_A, MAC_B, ETH_P_IP, vlan=4096),
        lambda: build_ethernet(MAC_A, MAC_B, ETH_P_IP, vlan=1, pcp=8),
        lambda: build_ipv4(IP_A, IP_B, PROTO_UDP, b"", options=b"\x01"),
        lambda: build_tcp(IP_A, IP_B, 1, 2, 0, options=b"\x01"),
        lambda: dhcp.build_dhcp(1, 1, bytes(5)),
        lambda: dhcp.build_dhcp(1, 1, MAC_A, options=[(dhcp.END, b"")]),
        lambda: dhcp.build_dhcp(1, 1, MAC_A, options=[(dhcp.PAD, b"")]),
    ],
)
def test_builders_reject_out_of_range(build: Callable[[], bytes]) -> None:
    with pytest.raises(ValueError):
        build()
