"""Property tests: parse(build(fields)) == fields for every codec, and fragmentation reassembles."""

from hypothesis import given, settings
from hypothesis import strategies as st

from openvpc.packet import dhcp
from openvpc.packet.arp import ARP_REPLY, ARP_REQUEST, Arp, build_arp, parse_arp
from openvpc.packet.checksum import checksum
from openvpc.packet.ethernet import ETH_P_8021Q, Ethernet, build_ethernet, parse_ethernet
from openvpc.packet.ipv4 import (
    FLAG_DF,
    FLAG_MF,
    IPV4_LEN,
    OFFSET_MASK,
    PROTO_TCP,
    PROTO_UDP,
    build_ipv4,
    fragment,
    parse_ipv4,
)
from openvpc.packet.l4 import (
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

EXAMPLES = settings(max_examples=150, deadline=None)

macs = st.binary(min_size=6, max_size=6)
ips = st.binary(min_size=4, max_size=4)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
payloads = st.binary(max_size=200)


def words(max_words: int) -> st.SearchStrategy[bytes]:
    """Option bytes: a whole number of 32-bit words."""
    return st.integers(0, max_words).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n))


@EXAMPLES
@given(macs, macs, u16.filter(lambda t: t != ETH_P_8021Q), payloads)
def test_ethernet(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> None:
    frame = build_ethernet(dst, src, ethertype, payload)
    assert parse_ethernet(frame) == Ethernet(dst, src, ethertype, None, 0, 14)
    assert frame[14:] == payload


@EXAMPLES
@given(macs, macs, u16, st.integers(0, 4095), st.integers(0, 7), payloads)
def test_ethernet_vlan(
    dst: bytes, src: bytes, ethertype: int, vlan: int, pcp: int, payload: bytes
) -> None:
    frame = build_ethernet(dst, src, ethertype, payload, vlan=vlan, pcp=pcp)
    assert parse_ethernet(frame) == Ethernet(dst, src, ethertype, vlan, pcp, 18)
    assert frame[18:] == payload


@EXAMPLES
@given(
    src=ips,
    dst=ips,
    proto=u8,
    payload=payloads,
    ttl=u8,
    tos=u8,
    ident=u16,
    df=st.booleans(),
    mf=st.booleans(),
    frag_offset=st.integers(0, OFFSET_MASK),
    options=words(10),
)
def test_ipv4(
    src: bytes,
    dst: bytes,
    proto: int,
    payload: bytes,
    ttl: int,
    tos: int,
    ident: int,
    df: bool,
    mf: bool,
    frag_offset: int,
    options: bytes,
) -> None:
    pkt = build_ipv4(src, dst, proto, payload, ttl, tos, ident, df, mf, frag_offset, options)
    ip = parse_ipv4(pkt)
    hlen = IPV4_LEN + len(options)
    flags = (FLAG_DF if df else 0) | (FLAG_MF if mf else 0) | frag_offset
    assert ip._replace(checksum=0) == (
        hlen,
        tos,
        hlen + len(payload),
        ident,
        flags,
        ttl,
        proto,
        0,
        src,
        dst,
    )
    assert ip.df == df and ip.frag_offset == frag_offset
    assert ip.is_fragment == (mf or frag_offset != 0)
    assert checksum(pkt[:hlen]) == 0
    assert pkt[IPV4_LEN:hlen] == options and pkt[hlen:] == payload


@EXAMPLES
@given(u8, u8, st.binary(min_size=4, max_size=4), payloads)
def test_icmp(type_: int, code: int, rest: bytes, payload: bytes) -> None:
    msg = build_icmp(type_, code, rest, payload)
    icmp = parse_icmp(msg)
    assert (icmp.type, icmp.code, icmp.rest) == (type_, code, rest)
    assert icmp == Icmp(type_, code, int.from_bytes(msg[2:4], "big"), rest)
    assert checksum(msg) == 0 and msg[8:] == payload


@EXAMPLES
@given(ips, ips, u16, u16, payloads, st.booleans())
def test_udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes, csum: bool) -> None:
    seg = build_udp(src, dst, sport, dport, payload, with_checksum=csum)
    udp = parse_udp(seg)
    assert udp._replace(checksum=0) == Udp(sport, dport, 8 + len(payload), 0)
    assert (udp.checksum != 0) == csum
    assert l4_checksum_ok(src, dst, PROTO_UDP, seg)
    assert seg[8:] == payload


@EXAMPLES
@given(ips, ips, u16, u16, u8, u32, u32, u16, payloads, words(10))
def test_tcp(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    flags: int,
    seq: int,
    ack: int,
    window: int,
    payload: bytes,
    options: bytes,
) -> None:
    seg = build_tcp(src, dst, sport, dport, flags, seq, ack, window, payload, options)
    tcp = parse_tcp(seg)
    hlen = 20 + len(options)
    assert tcp._replace(checksum=0) == Tcp(sport, dport, seq, ack, hlen, flags, window, 0)
    assert l4_checksum_ok(src, dst, PROTO_TCP, seg)
    assert seg[20:hlen] == options and seg[hlen:] == payload


@EXAMPLES
@given(st.sampled_from([ARP_REQUEST, ARP_REPLY]), macs, ips, macs, ips)
def test_arp(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> None:
    assert parse_arp(build_arp(op, sha, spa, tha, tpa)) == Arp(op, sha, spa, tha, tpa)


@EXAMPLES
@given(u16, st.none() | u32, payloads)
def test_gre(protocol: int, key: int | None, payload: bytes) -> None:
    pkt = build_gre(protocol, key) + payload
    gre = parse_gre(pkt)
    assert gre == Gre(protocol, key, 4 if key is None else 8)
    assert pkt[gre.header_len :] == payload


@EXAMPLES
@given(st.integers(0, 0xFFFFF), u8, st.integers(0, 7), st.booleans())
def test_mpls_entry(label: int, ttl: int, tc: int, bos: bool) -> None:
    assert parse_mpls(build_mpls(label, ttl, tc, bos)) == MplsEntry(label, tc, bos, ttl)


@EXAMPLES
@given(st.lists(st.integers(0, 0xFFFFF), min_size=1, max_size=8), u8, payloads)
def test_mpls_stack(labels: list[int], ttl: int, payload: bytes) -> None:
    entries, end = parse_mpls_stack(build_mpls_stack(labels, ttl) + payload)
    assert [e.label for e in entries] == labels
    assert [e.bos for e in entries] == [False] * (len(labels) - 1) + [True]
    assert all(e.ttl == ttl and e.tc == 0 for e in entries)
    assert end == 4 * len(labels)


@EXAMPLES
@given(st.integers(0, (1 << 24) - 1))
def test_vxlan(vni: int) -> None:
    assert parse_vxlan(build_vxlan(vni)) == vni


dhcp_codes = st.integers(1, 254).filter(lambda c: c not in (dhcp.OVERLOAD, dhcp.MSG_TYPE))


@EXAMPLES
@given(
    op=st.sampled_from([dhcp.BOOTREQUEST, dhcp.BOOTREPLY]),
    xid=u32,
    chaddr=macs,
    addrs=st.tuples(ips, ips, ips, ips),
    flags=u16,
    msg_type=st.none() | st.integers(1, 8),
    options=st.dictionaries(dhcp_codes, st.binary(max_size=300), max_size=12),
)
def test_dhcp(
    op: int,
    xid: int,
    chaddr: bytes,
    addrs: tuple[bytes, bytes, bytes, bytes],
    flags: int,
    msg_type: int | None,
    options: dict[int, bytes],
) -> None:
    yiaddr, siaddr, ciaddr, giaddr = addrs
    opts = list(options.items())
    if msg_type is not None:
        opts.insert(0, (dhcp.MSG_TYPE, bytes((msg_type,))))
    msg = dhcp.build_dhcp(op, xid, chaddr, yiaddr, siaddr, ciaddr, giaddr, flags, opts)
    assert len(msg) >= 300
    parsed = dhcp.parse_dhcp(msg)
    assert parsed == dhcp.Dhcp(
        op, 1, 6, xid, 0, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, dict(opts)
    )
    assert parsed.msg_type == msg_type


@settings(max_examples=200, deadline=None)
@given(
    payload=st.binary(max_size=3000),
    options=words(10),
    ident=u16,
    df=st.booleans(),
    mtu_slack=st.integers(8, 1500),
)
def test_fragment_reassembles(
    payload: bytes, options: bytes, ident: int, df: bool, mtu_slack: int
) -> None:
    src, dst = b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02"
    pkt = build_ipv4(src, dst, PROTO_UDP, payload, ident=ident, df=df, options=options)
    hlen = IPV4_LEN + len(options)
    mtu = hlen + mtu_slack
    frags = fragment(pkt, mtu)
    if len(pkt) <= mtu:
        assert frags == [pkt]
        return
    data = bytearray()
    for i, frag in enumerate(frags):
        assert len(frag) <= mtu
        ip = parse_ipv4(frag)  # verifies the header checksum
        assert checksum(frag[: ip.header_len]) == 0
        assert ip.header_len == hlen and ip.total_length == len(frag)
        assert ip.ident == ident and ip.df == df
        last = i == len(frags) - 1
        assert bool(ip.flags_frag & FLAG_MF) == (not last)
        assert ip.frag_offset * 8 == len(data)
        if not last:
            assert (len(frag) - hlen) % 8 == 0
        data += frag[hlen:]
    assert bytes(data) == payload


@EXAMPLES
@given(
    payload=st.binary(min_size=1, max_size=2000),
    first_offset=st.integers(0, 1000),
    mf=st.booleans(),
)
def test_refragmenting_a_fragment_keeps_offsets(
    payload: bytes, first_offset: int, mf: bool
) -> None:
    pkt = build_ipv4(bytes(4), bytes(4), PROTO_UDP, payload, mf=mf, frag_offset=first_offset)
    frags = fragment(pkt, 576)
    data = b""
    for i, frag in enumerate(frags):
        ip = parse_ipv4(frag)
        assert ip.frag_offset == first_offset + len(data) // 8
        assert bool(ip.flags_frag & FLAG_MF) == (mf or i < len(frags) - 1)
        data += frag[ip.header_len :]
    assert data == payload


def test_fragment_copies_only_copied_options() -> None:
    # router alert (0x94, copied) stays in every fragment; record route (7, not copied) and
    # timestamp (0x44, not copied) are replaced by NOPs after the first fragment (RFC 791)
    rr = bytes((7, 7, 4)) + bytes(4)
    ts = bytes((0x44, 8, 5, 0)) + bytes(4)
    options = bytes((0x94, 4, 0, 0)) + rr + ts + b"\x01\x00\x00\x00\x00"
    assert len(options) % 4 == 0
    pkt = build_ipv4(bytes(4), bytes(4), PROTO_UDP, bytes(100), options=options)
    frags = fragment(pkt, 20 + len(options) + 40)
    assert len(frags) == 3
    assert frags[0][20 : 20 + len(options)] == options
    later = bytes((0x94, 4, 0, 0)) + b"\x01" * 15 + b"\x01\x00\x00\x00\x00"
    for frag in frags[1:]:
        assert frag[20 : 20 + len(options)] == later
        parse_ipv4(frag)
