"""Golden bytes written out by hand from the RFCs: build gives them, parse gives the fields."""

from openvpc.packet import dhcp
from openvpc.packet.arp import ARP_REPLY, ARP_REQUEST, Arp, build_arp, parse_arp
from openvpc.packet.checksum import checksum
from openvpc.packet.ethernet import (
    BROADCAST,
    ETH_P_ARP,
    ETH_P_IP,
    Ethernet,
    build_ethernet,
    parse_ethernet,
)
from openvpc.packet.ipv4 import PROTO_UDP, build_ipv4, parse_ipv4
from openvpc.packet.l4 import (
    ICMP_ECHO_REQUEST,
    TCP_SYN,
    Icmp,
    Tcp,
    Udp,
    build_icmp,
    build_tcp,
    build_udp,
    l4_checksum_ok,
    parse_icmp,
    parse_tcp,
    parse_udp,
)
from openvpc.packet.tunnel import (
    Gre,
    MplsEntry,
    build_gre,
    build_mpls,
    build_mpls_stack,
    build_vxlan,
    parse_gre,
    parse_mpls,
    parse_mpls_stack,
    parse_vxlan,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text)


MAC_A = h("001122334455")
MAC_B = h("66778899aabb")
IP_1 = h("0a000001")  # 10.0.0.1
IP_2 = h("0a000002")  # 10.0.0.2


def test_ethernet_untagged() -> None:
    frame = h("ffffffffffff 001122334455 0806")
    assert build_ethernet(BROADCAST, MAC_A, ETH_P_ARP) == frame
    assert parse_ethernet(frame) == Ethernet(BROADCAST, MAC_A, ETH_P_ARP, None, 0, 14)


def test_ethernet_8021q() -> None:
    # TCI: PCP 5 (101), DEI 0, VID 100 (0x064) -> 0xa064
    frame = h("66778899aabb 001122334455 8100 a064 0800") + b"payload"
    assert build_ethernet(MAC_B, MAC_A, ETH_P_IP, b"payload", vlan=100, pcp=5) == frame
    assert parse_ethernet(frame) == Ethernet(MAC_B, MAC_A, ETH_P_IP, 100, 5, 18)


def test_arp_request() -> None:
    # who-has 192.168.1.1 tell 192.168.1.100 (RFC 826 layout)
    pkt = h("0001 0800 06 04 0001 001122334455 c0a80164 000000000000 c0a80101")
    assert build_arp(ARP_REQUEST, MAC_A, h("c0a80164"), bytes(6), h("c0a80101")) == pkt
    assert parse_arp(pkt) == Arp(ARP_REQUEST, MAC_A, h("c0a80164"), bytes(6), h("c0a80101"))


def test_arp_reply() -> None:
    pkt = h("0001 0800 06 04 0002 66778899aabb c0a80101 001122334455 c0a80164")
    assert build_arp(ARP_REPLY, MAC_B, h("c0a80101"), MAC_A, h("c0a80164")) == pkt
    assert parse_arp(pkt).op == ARP_REPLY


def test_ipv4_classic_header() -> None:
    # the textbook example: 192.168.0.1 -> 192.168.0.199, UDP, DF, TTL 64, checksum 0xb861
    header = h("4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7")
    payload = bytes(0x73 - 20)
    pkt = build_ipv4(h("c0a80001"), h("c0a800c7"), PROTO_UDP, payload, ttl=64, df=True)
    assert pkt == header + payload
    ip = parse_ipv4(pkt)
    assert ip.header_len == 20
    assert ip.total_length == 0x73
    assert ip.flags_frag == 0x4000 and ip.df and not ip.is_fragment
    assert (ip.ttl, ip.proto, ip.checksum) == (64, PROTO_UDP, 0xB861)
    assert (ip.src, ip.dst) == (h("c0a80001"), h("c0a800c7"))
    assert checksum(header) == 0


def test_ipv4_with_router_alert_option() -> None:
    # IHL 6, 10.0.0.1 -> 224.0.0.22, TTL 1, IGMP, router alert (RFC 2113): 9404 0000
    pkt = h("4600 0018 0000 0000 0102 3ac9 0a00 0001 e000 0016 9404 0000")
    assert build_ipv4(IP_1, h("e0000016"), 2, b"", ttl=1, options=h("94040000")) == pkt
    ip = parse_ipv4(pkt)
    assert (ip.header_len, ip.total_length, ip.checksum) == (24, 24, 0x3AC9)


def test_ipv4_fragment_fields() -> None:
    # MF set, offset 185 (1480 bytes), ident 0xabcd
    pkt = build_ipv4(IP_1, IP_2, PROTO_UDP, bytes(8), ident=0xABCD, mf=True, frag_offset=185)
    assert pkt[4:8] == h("abcd 20b9")
    ip = parse_ipv4(pkt)
    assert ip.is_fragment and ip.frag_offset == 185 and not ip.df


def test_icmp_echo_request() -> None:
    # 0800 + 0001 + 0001 = 0x0802; checksum = ~0x0802 = 0xf7fd
    msg = h("08 00 f7fd 0001 0001")
    assert build_icmp(ICMP_ECHO_REQUEST, 0, h("00010001")) == msg
    assert parse_icmp(msg) == Icmp(ICMP_ECHO_REQUEST, 0, 0xF7FD, h("00010001"))


def test_udp_checksum() -> None:
    # pseudo-header 0a00 0001 0a00 0002 0011 0008, header 04d2 0050 0008 0000:
    # sum 0x1946, checksum 0xe6b9
    seg = h("04d2 0050 0008 e6b9")
    assert build_udp(IP_1, IP_2, 1234, 80, b"") == seg
    assert parse_udp(seg) == Udp(1234, 80, 8, 0xE6B9)
    assert l4_checksum_ok(IP_1, IP_2, PROTO_UDP, seg)


def test_udp_checksum_zero_goes_out_as_ffff() -> None:
    # pseudo-header and header sum to 0x194a; a payload of 0xe6b5 makes the sum 0xffff, so the
    # computed checksum is 0, which RFC 768 transmits as 0xffff (0 means "no checksum")
    seg = h("04d2 0050 000a ffff e6b5")
    assert build_udp(IP_1, IP_2, 1234, 80, h("e6b5")) == seg
    assert l4_checksum_ok(IP_1, IP_2, PROTO_UDP, seg)


def test_udp_without_checksum() -> None:
    seg = h("04d2 0050 000a 0000 abcd")
    assert build_udp(IP_1, IP_2, 1234, 80, h("abcd"), with_checksum=False) == seg
    assert l4_checksum_ok(IP_1, IP_2, PROTO_UDP, seg)


def test_tcp_syn() -> None:
    # pseudo-header 0a00 0001 0a00 0002 0006 0014 plus header words: sum 0x6941, checksum 0x96be
    seg = h("04d2 0050 00000000 00000000 5002 ffff 96be 0000")
    assert build_tcp(IP_1, IP_2, 1234, 80, TCP_SYN) == seg
    assert parse_tcp(seg) == Tcp(1234, 80, 0, 0, 20, TCP_SYN, 0xFFFF, 0x96BE)
    assert l4_checksum_ok(IP_1, IP_2, 6, seg)


def test_gre() -> None:
    assert build_gre(0x8847) == h("0000 8847")
    assert parse_gre(h("0000 8847")) == Gre(0x8847, None, 4)


def test_gre_with_key() -> None:
    pkt = h("2000 6558 01020304")
    assert build_gre(0x6558, key=0x01020304) == pkt
    assert parse_gre(pkt) == Gre(0x6558, 0x01020304, 8)


def test_gre_with_checksum_and_sequence_skipped() -> None:
    # C, K and S set: checksum+reserved1, key, sequence number
    pkt = h("b000 0800 abcd0000 0000002a 00000007")
    assert parse_gre(pkt) == Gre(0x0800, 42, 16)


def test_mpls_entry() -> None:
    # label 100 (0x00064), TC 0, S 1, TTL 64 -> 0x00064140
    assert build_mpls(100, ttl=64) == h("00064140")
    assert parse_mpls(h("00064140")) == MplsEntry(100, 0, True, 64)


def test_mpls_entry_with_tc() -> None:
    # label 0xfffff, TC 5, S 0, TTL 255 -> ffff fa ff
    assert build_mpls(0xFFFFF, ttl=255, tc=5, bos=False) == h("fffffaff")
    assert parse_mpls(h("fffffaff")) == MplsEntry(0xFFFFF, 5, False, 255)


def test_mpls_stack() -> None:
    stack = h("00010040 00002140")  # label 16 (not bos), label 2 (bos), TTL 64
    assert build_mpls_stack([16, 2]) == stack
    entries, end = parse_mpls_stack(stack + b"rest")
    assert entries == [MplsEntry(16, 0, False, 64), MplsEntry(2, 0, True, 64)]
    assert end == 8


def test_vxlan() -> None:
    # RFC 7348: flags 0x08 (I), 24 reserved bits, VNI, 8 reserved bits
    assert build_vxlan(0x123456) == h("08000000 12345600")
    assert parse_vxlan(h("08000000 12345600")) == 0x123456


def test_dhcp_discover() -> None:
    chaddr = h("000c29aabbcc")
    msg = (
        h("01 01 06 00 3903f326 0000 8000")  # op htype hlen hops xid secs flags(broadcast)
        + bytes(16)  # ciaddr yiaddr siaddr giaddr
        + chaddr
        + bytes(10)  # the rest of chaddr
        + bytes(64 + 128)  # sname, file
        + h("63825363")  # magic cookie
        + h("35 01 01")  # message type: DISCOVER
        + h("37 03 01 03 06")  # parameter request list: mask, router, DNS
        + h("ff")
    )
    msg += bytes(300 - len(msg))
    built = dhcp.build_dhcp(
        dhcp.BOOTREQUEST,
        0x3903F326,
        chaddr,
        flags=dhcp.FLAG_BROADCAST,
        options=[(dhcp.MSG_TYPE, b"\x01"), (dhcp.PARAM_LIST, h("010306"))],
    )
    assert built == msg
    parsed = dhcp.parse_dhcp(msg)
    assert parsed == dhcp.Dhcp(
        op=1,
        htype=1,
        hlen=6,
        xid=0x3903F326,
        secs=0,
        flags=0x8000,
        ciaddr=bytes(4),
        yiaddr=bytes(4),
        siaddr=bytes(4),
        giaddr=bytes(4),
        chaddr=chaddr,
        options={53: b"\x01", 55: h("010306")},
    )
    assert parsed.msg_type == dhcp.DISCOVER


def test_dhcp_offer() -> None:
    options = [
        (dhcp.MSG_TYPE, b"\x02"),
        (dhcp.SERVER_ID, h("0a000001")),
        (dhcp.LEASE_TIME, h("00000e10")),
        (dhcp.SUBNET_MASK, h("ffffff00")),
        (dhcp.ROUTER, h("0a000001")),
        (dhcp.DNS, h("0a000002")),
        (dhcp.MTU, h("2328")),
    ]
    msg = dhcp.build_dhcp(
        dhcp.BOOTREPLY, 7, MAC_A, yiaddr=h("0a00000a"), siaddr=h("0a000001"), options=options
    )
    assert len(msg) == 300
    assert msg[16:20] == h("0a00000a") and msg[20:24] == h("0a000001")
    assert msg[236:] == (
        h("63825363 350102 3604 0a000001 3304 00000e10 0104 ffffff00 0304 0a000001")
        + h("0604 0a000002 1a02 2328 ff")
        + bytes(300 - 236 - 42)
    )
    parsed = dhcp.parse_dhcp(msg)
    assert parsed.msg_type == dhcp.OFFER
    assert parsed.options == dict(options)


def test_dhcp_pad_and_overload() -> None:
    # PADs between options are skipped; overload 3 puts options in file and then sname
    msg = bytearray(dhcp.build_dhcp(dhcp.BOOTREQUEST, 1, MAC_A, options=[(52, b"\x03")]))
    msg[240:246] = h("00 00 3401 03 00")
    msg[246:] = h("ff") + bytes(len(msg) - 247)
    msg[108:113] = h("3501 03 ff 00")  # file: message type REQUEST
    msg[44:50] = h("0c03 766d31 ff")  # sname: hostname "vm1"
    parsed = dhcp.parse_dhcp(bytes(msg))
    assert parsed.options == {52: b"\x03", 53: b"\x03", 12: b"vm1"}
    assert parsed.msg_type == dhcp.REQUEST


def test_dhcp_long_option_is_split_and_concatenated() -> None:
    # RFC 3396: a 300-byte value goes out as 255 + 45 bytes under the same code
    value = bytes(range(256)) + bytes(44)
    msg = dhcp.build_dhcp(dhcp.BOOTREPLY, 1, MAC_A, options=[(dhcp.DOMAIN_NAME, value)])
    assert msg[240:242] == h("0fff") and msg[497:499] == h("0f2d")
    assert dhcp.parse_dhcp(msg).options == {dhcp.DOMAIN_NAME: value}
