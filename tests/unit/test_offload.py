"""TAP offloads: vnet header, checksum completion and TCPv4 segmentation, scapy as the oracle."""

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from openvpc.packet.checksum import ones_sum, pseudo_header_sum
from openvpc.packet.errors import Malformed
from openvpc.packet.ipv4 import PROTO_TCP, PROTO_UDP, ip_to_bytes
from openvpc.vrouter.offload import (
    F_DATA_VALID,
    F_NEEDS_CSUM,
    GSO_ECN,
    GSO_TCPV4,
    TO_TAP_HDR,
    VNET_HDR_LEN,
    build_vnet_hdr,
    frames_from_tap,
    parse_vnet_hdr,
    segment_tcp4,
)

SRC, DST = "10.0.1.3", "10.0.1.4"
MSS = 1448
PAYLOAD = bytes(range(256)) * 40 + b"tail"  # 10244 bytes: 7 full segments and a short one


def super_frame(flags: str, payload: bytes = PAYLOAD, seq: int = 4294960000) -> bytes:
    """What a TAP with TSO hands over: one frame carrying many segments' worth of payload."""
    pkt = (
        Ether(src="02:00:00:00:00:01", dst="00:00:5e:00:01:00")
        / IP(src=SRC, dst=DST, id=65530, flags="DF", ttl=64)
        / TCP(
            sport=40000,
            dport=5201,
            seq=seq,
            ack=77,
            flags=flags,
            window=512,
            options=[("NOP", None), ("NOP", None), ("Timestamp", (123, 456))],
        )
        / Raw(payload)
    )
    return bytes(pkt)


def checksums_valid(pkt: Packet) -> bool:
    """Rebuild with scapy computing the checksums and compare with what we produced."""
    fresh = Ether(bytes(pkt))
    ip_sum, l4_sum = fresh[IP].chksum, fresh[IP].payload.chksum
    del fresh[IP].chksum
    del fresh[IP].payload.chksum
    again = Ether(bytes(fresh))
    return bool(again[IP].chksum == ip_sum and again[IP].payload.chksum == l4_sum)


def test_vnet_header_round_trip_and_to_tap_header() -> None:
    raw = build_vnet_hdr(F_NEEDS_CSUM, GSO_TCPV4, 66, 1448, 34, 16)
    assert len(raw) == VNET_HDR_LEN == 10
    hdr = parse_vnet_hdr(raw)
    assert (hdr.flags, hdr.gso_type, hdr.hdr_len, hdr.gso_size) == (1, 1, 66, 1448)
    assert (hdr.csum_start, hdr.csum_offset) == (34, 16)
    assert parse_vnet_hdr(TO_TAP_HDR).flags == F_DATA_VALID
    assert parse_vnet_hdr(TO_TAP_HDR).gso_type == 0
    with pytest.raises(Malformed):
        parse_vnet_hdr(b"\x00" * 9)


@pytest.mark.parametrize("flags", ["PA", "FPA", "CA", "CFPA", "A"])
def test_segmentation_matches_the_super_frame(flags: str) -> None:
    frame = super_frame(flags)
    orig = Ether(frame)
    hdr = build_vnet_hdr(F_NEEDS_CSUM, GSO_TCPV4 | GSO_ECN, 66, MSS, 34, 16)
    frames = frames_from_tap(hdr + frame)
    assert len(frames) == 8
    data = b""
    for i, raw in enumerate(frames):
        seg = Ether(raw)
        assert checksums_valid(seg), f"segment {i}"
        assert seg[IP].len == len(raw) - 14
        assert seg[IP].id == (65530 + i) & 0xFFFF
        assert seg[IP].flags == orig[IP].flags and seg[IP].ttl == 64
        assert seg[TCP].seq == (orig[TCP].seq + len(data)) & 0xFFFFFFFF
        assert seg[TCP].ack == 77 and seg[TCP].window == 512
        assert seg[TCP].options == orig[TCP].options
        last, first = i == len(frames) - 1, i == 0
        want = set(str(orig[TCP].flags))
        if not last:
            want -= {"F", "P"}
        if not first:
            want -= {"C"}
        assert set(str(seg[TCP].flags)) == want, f"segment {i}"
        payload = bytes(seg[TCP].payload)
        assert len(payload) == (MSS if not last else len(PAYLOAD) - 7 * MSS)
        data += payload
    assert data == PAYLOAD


def test_a_super_frame_that_fits_one_segment_passes_whole() -> None:
    frames = segment_tcp4(super_frame("PA", b"x" * 100), MSS)
    assert len(frames) == 1
    assert checksums_valid(Ether(frames[0]))
    assert bytes(Ether(frames[0])[TCP].payload) == b"x" * 100


def partial(pkt: Packet, proto: int, csum_at: int) -> tuple[bytearray, int]:
    """The frame as a TAP with TUN_F_CSUM gives it: L4 checksum = the pseudo-header sum."""
    buf = bytearray(bytes(pkt))
    l4 = buf[34:]
    buf[csum_at : csum_at + 2] = b"\0\0"
    part = ones_sum(b"", pseudo_header_sum(ip_to_bytes(SRC), ip_to_bytes(DST), proto, len(l4)))
    buf[csum_at : csum_at + 2] = part.to_bytes(2, "big")
    return buf, 34


def test_partial_tcp_checksum_completed() -> None:
    pkt = Ether() / IP(src=SRC, dst=DST) / TCP(sport=1, dport=2, flags="PA") / Raw(b"abc" * 91)
    buf, start = partial(pkt, PROTO_TCP, 34 + 16)
    assert not checksums_valid(Ether(bytes(buf)))
    (frame,) = frames_from_tap(build_vnet_hdr(F_NEEDS_CSUM, 0, 0, 0, start, 16) + bytes(buf))
    assert checksums_valid(Ether(frame))
    assert frame == bytes(pkt)


def test_partial_udp_checksum_completed() -> None:
    pkt = Ether() / IP(src=SRC, dst=DST) / UDP(sport=68, dport=67) / Raw(b"dhcp" * 30)
    buf, start = partial(pkt, PROTO_UDP, 34 + 6)
    (frame,) = frames_from_tap(build_vnet_hdr(F_NEEDS_CSUM, 0, 0, 0, start, 6) + bytes(buf))
    assert checksums_valid(Ether(frame))


def test_plain_frame_passes_untouched() -> None:
    frame = super_frame("A", b"hello")
    assert frames_from_tap(build_vnet_hdr() + frame) == [frame]


@pytest.mark.parametrize(
    ("hdr", "frame", "reason"),
    [
        (build_vnet_hdr(gso_type=3, gso_size=1400), super_frame("A"), "gso_unsupported"),
        (build_vnet_hdr(gso_type=GSO_TCPV4, gso_size=0), super_frame("A"), "gso_size_invalid"),
        (build_vnet_hdr(gso_type=GSO_TCPV4, gso_size=8), super_frame("A"), "gso_size_invalid"),
        (build_vnet_hdr(gso_type=GSO_TCPV4, gso_size=535), super_frame("A"), "gso_size_invalid"),
        (build_vnet_hdr(F_NEEDS_CSUM, 0, 0, 0, 60, 9000), super_frame("A", b"x"), None),
        (
            build_vnet_hdr(gso_type=GSO_TCPV4, gso_size=1400),
            bytes(Ether() / IP() / UDP() / Raw(b"x" * 3000)),
            "gso_not_tcp",
        ),
        (build_vnet_hdr(gso_type=GSO_TCPV4, gso_size=1400), b"\x01" * 20, None),
    ],
)
def test_malformed_offload_input_raises_malformed(hdr: bytes, frame: bytes, reason: str) -> None:
    with pytest.raises(Malformed) as err:
        frames_from_tap(hdr + frame)
    if reason is not None:
        assert err.value.reason == reason
