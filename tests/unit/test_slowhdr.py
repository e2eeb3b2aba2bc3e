"""pkt0 framing: the slow_hdr of layout.h behind a vnet header, both ways; scapy as the oracle
for the bytes and the checksums."""

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from openvpc.packet.checksum import ones_sum, pseudo_header_sum
from openvpc.packet.errors import Malformed
from openvpc.packet.ipv4 import PROTO_UDP, ip_to_bytes
from openvpc.vrouter.ebpf.layout import SLOW_ETH_P, SlowReason
from openvpc.vrouter.ebpf.slowhdr import (
    SLOW_HDR_LEN,
    SlowFrame,
    from_pkt0,
    slow_hdr,
    to_pkt0,
)
from openvpc.vrouter.offload import (
    F_DATA_VALID,
    F_NEEDS_CSUM,
    GSO_TCPV4,
    VNET_HDR_LEN,
    build_vnet_hdr,
    parse_vnet_hdr,
)

FRAME = bytes(
    Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    / IP(src="10.0.1.3", dst="10.0.1.4")
    / UDP(sport=1000, dport=2000)
    / Raw(b"x" * 30)
)


def test_the_header_is_layout_h_struct_slow_hdr() -> None:
    hdr = slow_hdr(0x01020304, SlowReason.MTU)
    assert SLOW_HDR_LEN == len(hdr) == 22
    assert hdr == bytes(12) + b"\x88\xb5" + b"\x01\x02\x03\x04" + b"\x00\x05" + b"\x00\x00"
    assert Ether(hdr).type == SLOW_ETH_P  # an Ethernet header as far as a capture goes


def test_up_round_trip() -> None:
    read = build_vnet_hdr() + slow_hdr(7, SlowReason.FLOW) + FRAME
    assert from_pkt0(read) == SlowFrame(7, SlowReason.FLOW, FRAME)


def test_down_is_a_whole_frame_with_valid_checksums_behind_the_header() -> None:
    vnet, hdr, frame = to_pkt0(9, FRAME)
    assert parse_vnet_hdr(vnet).flags == F_DATA_VALID
    assert hdr == slow_hdr(9, SlowReason.INJECT)
    assert frame == FRAME


def test_a_partial_checksum_is_completed_counting_from_after_our_header() -> None:
    scapy_pkt = Ether(FRAME)
    buf = bytearray(FRAME)
    l4 = 14 + 20
    # what the kernel leaves: the pseudo-header sum in the UDP checksum field
    partial = pseudo_header_sum(
        ip_to_bytes("10.0.1.3"), ip_to_bytes("10.0.1.4"), PROTO_UDP, len(FRAME) - l4
    )
    buf[l4 + 6 : l4 + 8] = ones_sum(b"", partial).to_bytes(2, "big")
    vnet = build_vnet_hdr(F_NEEDS_CSUM, csum_start=SLOW_HDR_LEN + l4, csum_offset=6)
    assert bytes(buf) != FRAME
    got = from_pkt0(vnet + slow_hdr(3, SlowReason.OTHER) + bytes(buf))
    assert got.frame == FRAME and Ether(got.frame)[UDP].chksum == scapy_pkt[UDP].chksum


def test_a_super_frame_up_keeps_its_mss_and_down_gets_offsets_past_our_header() -> None:
    sup = bytes(
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src="10.0.1.3", dst="10.0.1.4", flags="DF")
        / TCP(sport=1, dport=2, flags="A")
        / Raw(b"y" * 5000)
    )
    vnet = build_vnet_hdr(F_NEEDS_CSUM, GSO_TCPV4, SLOW_HDR_LEN + 54, 1448, SLOW_HDR_LEN + 34, 16)
    assert from_pkt0(vnet + slow_hdr(4, SlowReason.FLOW) + sup) == SlowFrame(
        4, SlowReason.FLOW, sup, 1448
    )
    down, hdr, frame = to_pkt0(5, sup, 1448)
    h = parse_vnet_hdr(down)
    assert (h.gso_type, h.gso_size, h.csum_start, h.csum_offset, h.hdr_len) == (
        GSO_TCPV4,
        1448,
        SLOW_HDR_LEN + 34,
        16,
        SLOW_HDR_LEN + 54,
    )
    assert hdr == slow_hdr(5) and frame == sup


def test_a_tag_the_tap_wrote_into_our_header_goes_back_into_the_frame() -> None:
    tagged = bytes(
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / Dot1Q(vlan=300)
        / IP(src="10.0.1.3", dst="10.0.1.4")
        / UDP()
    )
    hdr = slow_hdr(1, SlowReason.OTHER)
    plain = tagged[:12] + tagged[16:]
    read = build_vnet_hdr() + hdr[:12] + tagged[12:16] + hdr[12:] + plain
    assert from_pkt0(read) == SlowFrame(1, SlowReason.OTHER, tagged)


@pytest.mark.parametrize(
    ("read", "reason"),
    [
        (b"\x00" * 5, "short_vnet_hdr"),
        (build_vnet_hdr() + slow_hdr(1)[:21], "slow_hdr_short"),
        (build_vnet_hdr() + FRAME, "slow_hdr_bad_proto"),
        (build_vnet_hdr(gso_type=3, gso_size=100) + slow_hdr(1) + FRAME, "gso_unsupported"),
    ],
)
def test_bad_reads_are_malformed(read: bytes, reason: str) -> None:
    with pytest.raises(Malformed) as e:
        from_pkt0(read)
    assert e.value.reason == reason
    assert VNET_HDR_LEN == 10
