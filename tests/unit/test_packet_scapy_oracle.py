"""Scapy as an independent oracle: it reads what we build, and we read what it builds."""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.contrib.mpls import MPLS
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption
from scapy.layers.l2 import ARP, GRE, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from openvpc.packet import dhcp
from openvpc.packet.arp import ARP_REPLY, ARP_REQUEST, build_arp, parse_arp
from openvpc.packet.checksum import checksum
from openvpc.packet.ethernet import (
    ETH_P_8021Q,
    ETH_P_IP,
    ETH_P_MPLS,
    ETH_P_TEB,
    build_ethernet,
    mac_to_str,
    parse_ethernet,
)
from openvpc.packet.ipv4 import (
    FLAG_MF,
    PROTO_GRE,
    PROTO_TCP,
    PROTO_UDP,
    build_ipv4,
    ip_to_bytes,
    ip_to_str,
    parse_ipv4,
)
from openvpc.packet.l4 import (
    build_icmp,
    build_tcp,
    build_udp,
    l4_checksum_ok,
    parse_icmp,
    parse_tcp,
    parse_udp,
)
from openvpc.packet.tunnel import (
    UDP_PORT_MPLS,
    UDP_PORT_VXLAN,
    build_gre,
    build_mpls,
    build_mpls_stack,
    build_vxlan,
    parse_gre,
    parse_mpls,
    parse_mpls_stack,
    parse_vxlan,
)

ORACLE = settings(max_examples=50, deadline=None)

macs = st.binary(min_size=6, max_size=6)
ips = st.binary(min_size=4, max_size=4)
u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
payloads = st.binary(max_size=100)
# ethertypes scapy reads as such (up to 1500 it is an 802.3 length), other than a VLAN tag
ethertypes = st.integers(0x0600, 0xFFFF).filter(lambda t: t not in (ETH_P_8021Q, 0x88A8, 0x9100))
# ICMP types whose layout scapy reads the same for any code, rest and payload
icmp_types = st.sampled_from([0, 3, 8, 11])


@st.composite
def ip_options(draw: st.DrawFn) -> bytes:
    """Well-formed IPv4 options (NOP, router alert, record route, loose source route), padded."""
    out = b""
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["nop", "ra", "rr", "lsrr"]))
        if kind == "nop":
            chunk = b"\x01"
        elif kind == "ra":
            chunk = b"\x94\x04" + draw(st.binary(min_size=2, max_size=2))
        else:
            n = draw(st.integers(1, 2))
            code = 0x07 if kind == "rr" else 0x83
            chunk = bytes((code, 3 + 4 * n, 4)) + draw(st.binary(min_size=4 * n, max_size=4 * n))
        if len(out) + len(chunk) > 40:
            break
        out += chunk
    return out + bytes(-len(out) % 4)


@st.composite
def tcp_options(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """Well-formed TCP options as scapy names them, at most 40 bytes once encoded."""
    out: list[tuple[str, Any]] = []
    size = 0
    option: tuple[str, Any]
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["MSS", "NOP", "WScale", "SAckOK", "Timestamp"]))
        if kind == "MSS":
            option, n = (kind, draw(u16)), 4
        elif kind == "NOP":
            option, n = (kind, None), 1
        elif kind == "WScale":
            option, n = (kind, draw(st.integers(0, 14))), 3
        elif kind == "SAckOK":
            option, n = (kind, b""), 2
        else:
            option, n = (kind, (draw(u32), draw(u32))), 10
        if size + n > 40:
            break
        out.append(option)
        size += n
    return out


def tcp_option_bytes(options: list[tuple[str, Any]]) -> bytes:
    """The same options on the wire, padded with NOPs, encoded by hand."""
    out = b""
    for kind, value in options:
        if kind == "MSS":
            out += b"\x02\x04" + value.to_bytes(2, "big")
        elif kind == "NOP":
            out += b"\x01"
        elif kind == "WScale":
            out += bytes((3, 3, value))
        elif kind == "SAckOK":
            out += b"\x04\x02"
        else:
            out += b"\x08\x0a" + value[0].to_bytes(4, "big") + value[1].to_bytes(4, "big")
    return out + b"\x01" * (-len(out) % 4)


def scapy_ip_options(options: bytes) -> list[Any]:
    """The same options as scapy option objects (one per option; zero padding is dropped)."""
    out = []
    i = 0
    while i < len(options) and options[i] != 0:
        size = 1 if options[i] == 1 else options[i + 1]
        out.append(IPOption(options[i : i + size]))
        i += size
    return out


# ---- Ethernet and 802.1Q


@ORACLE
@given(macs, macs, ethertypes, st.none() | st.tuples(st.integers(0, 4095), st.integers(0, 7)))
def test_scapy_reads_our_ethernet(
    dst: bytes, src: bytes, ethertype: int, tag: tuple[int, int] | None
) -> None:
    vlan, pcp = tag if tag else (None, 0)
    frame = build_ethernet(dst, src, ethertype, b"", vlan=vlan, pcp=pcp)
    p = Ether(frame)
    assert (p.dst, p.src) == (mac_to_str(dst), mac_to_str(src))
    expected = Ether(dst=mac_to_str(dst), src=mac_to_str(src))
    if tag is None:
        assert p.type == ethertype and Dot1Q not in p
        expected.type = ethertype
    else:
        assert p.type == ETH_P_8021Q
        assert (p[Dot1Q].vlan, p[Dot1Q].prio, p[Dot1Q].dei, p[Dot1Q].type) == (
            vlan,
            pcp,
            0,
            ethertype,
        )
        expected /= Dot1Q(vlan=vlan, prio=pcp, type=ethertype)
    assert bytes(expected) == frame


@ORACLE
@given(macs, macs, ethertypes, st.integers(0, 4095), st.integers(0, 7), st.integers(0, 1), payloads)
def test_we_read_scapy_ethernet(
    dst: bytes, src: bytes, ethertype: int, vlan: int, pcp: int, dei: int, payload: bytes
) -> None:
    untagged = bytes(Ether(dst=mac_to_str(dst), src=mac_to_str(src), type=ethertype) / Raw(payload))
    eth = parse_ethernet(untagged)
    assert (eth.dst, eth.src, eth.ethertype, eth.vlan, eth.offset) == (
        dst,
        src,
        ethertype,
        None,
        14,
    )
    tagged = bytes(
        Ether(dst=mac_to_str(dst), src=mac_to_str(src))
        / Dot1Q(vlan=vlan, prio=pcp, dei=dei, type=ethertype)
        / Raw(payload)
    )
    eth = parse_ethernet(tagged)
    assert (eth.ethertype, eth.vlan, eth.pcp, eth.offset) == (ethertype, vlan, pcp, 18)
    assert tagged[eth.offset :] == payload


# ---- ARP


@ORACLE
@given(st.sampled_from([ARP_REQUEST, ARP_REPLY]), macs, ips, macs, ips)
def test_scapy_reads_our_arp(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> None:
    p = ARP(build_arp(op, sha, spa, tha, tpa))
    assert (p.hwtype, p.ptype, p.hwlen, p.plen, p.op) == (1, ETH_P_IP, 6, 4, op)
    assert (p.hwsrc, p.psrc) == (mac_to_str(sha), ip_to_str(spa))
    assert (p.hwdst, p.pdst) == (mac_to_str(tha), ip_to_str(tpa))


@ORACLE
@given(st.sampled_from([ARP_REQUEST, ARP_REPLY]), macs, ips, macs, ips)
def test_we_read_scapy_arp(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> None:
    pkt = ARP(
        op=op,
        hwsrc=mac_to_str(sha),
        psrc=ip_to_str(spa),
        hwdst=mac_to_str(tha),
        pdst=ip_to_str(tpa),
    )
    assert parse_arp(bytes(pkt)) == (op, sha, spa, tha, tpa)


# ---- IPv4


@ORACLE
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
    frag_offset=st.integers(0, 0x1FFF),
    options=ip_options(),
)
def test_scapy_reads_our_ipv4(
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
    p = IP(pkt)
    hlen = 20 + len(options)
    assert (p.version, p.ihl * 4, p.tos, p.len, p.id) == (4, hlen, tos, len(pkt), ident)
    assert (int(p.flags), p.frag, p.ttl, p.proto) == (2 * df + mf, frag_offset, ttl, proto)
    assert (p.src, p.dst) == (ip_to_str(src), ip_to_str(dst))
    assert b"".join(bytes(o) for o in p.options).ljust(len(options), b"\x00") == options
    ours = p.chksum
    del p.chksum
    assert bytes(p) == pkt  # scapy recomputes the same header checksum
    assert IP(bytes(p)).chksum == ours


@ORACLE
@given(
    src=ips,
    dst=ips,
    proto=u8,
    payload=payloads,
    ttl=u8,
    tos=u8,
    ident=u16,
    flags=st.integers(0, 3),
    frag=st.integers(0, 0x1FFF),
    options=ip_options(),
)
def test_we_read_scapy_ipv4(
    src: bytes,
    dst: bytes,
    proto: int,
    payload: bytes,
    ttl: int,
    tos: int,
    ident: int,
    flags: int,
    frag: int,
    options: bytes,
) -> None:
    p = IP(
        src=ip_to_str(src),
        dst=ip_to_str(dst),
        proto=proto,
        ttl=ttl,
        tos=tos,
        id=ident,
        flags=flags,
        frag=frag,
        options=scapy_ip_options(options),
    ) / Raw(payload)
    pkt = bytes(p)
    ip = parse_ipv4(pkt)  # verifies scapy's checksum
    assert ip.header_len == IP(pkt).ihl * 4 and ip.total_length == len(pkt)
    assert (ip.tos, ip.ident, ip.ttl, ip.proto, ip.src, ip.dst) == (
        tos,
        ident,
        ttl,
        proto,
        src,
        dst,
    )
    assert ip.flags_frag == (flags << 13) | frag
    assert ip.df == bool(flags & 2) and bool(ip.flags_frag & FLAG_MF) == bool(flags & 1)
    assert ip.checksum == IP(pkt).chksum
    assert pkt[ip.header_len :] == payload


# ---- ICMP, UDP, TCP (inside IPv4, so scapy has the pseudo-header)


@ORACLE
@given(icmp_types, u8, st.binary(min_size=4, max_size=4), payloads)
def test_scapy_reads_our_icmp(type_: int, code: int, rest: bytes, payload: bytes) -> None:
    msg = build_icmp(type_, code, rest, payload)
    p = ICMP(msg)
    assert (p.type, p.code) == (type_, code)
    ours = p.chksum
    del p.chksum
    assert bytes(p) == msg
    assert ICMP(bytes(p)).chksum == ours


@ORACLE
@given(st.sampled_from([0, 8]), u16, u16, payloads)
def test_we_read_scapy_icmp_echo(type_: int, ident: int, seq: int, payload: bytes) -> None:
    msg = bytes(ICMP(type=type_, id=ident, seq=seq) / Raw(payload))
    icmp = parse_icmp(msg)
    assert (icmp.type, icmp.code) == (type_, 0)
    assert icmp.rest == ident.to_bytes(2, "big") + seq.to_bytes(2, "big")
    assert icmp.checksum == ICMP(msg).chksum and checksum(msg) == 0


@ORACLE
@given(u16)
def test_we_read_scapy_icmp_frag_needed(mtu: int) -> None:
    msg = bytes(ICMP(type=3, code=4, nexthopmtu=mtu))
    icmp = parse_icmp(msg)
    assert (icmp.type, icmp.code, icmp.rest[2:]) == (3, 4, mtu.to_bytes(2, "big"))
    assert checksum(msg) == 0


@ORACLE
@given(ips, ips, u16, u16, payloads, st.booleans())
def test_scapy_reads_our_udp(
    src: bytes, dst: bytes, sport: int, dport: int, payload: bytes, with_checksum: bool
) -> None:
    pkt = build_ipv4(src, dst, PROTO_UDP, build_udp(src, dst, sport, dport, payload, with_checksum))
    p = IP(pkt)
    assert (p[UDP].sport, p[UDP].dport, p[UDP].len) == (sport, dport, 8 + len(payload))
    if not with_checksum:
        assert p[UDP].chksum == 0
        return
    ours = p[UDP].chksum
    del p.chksum, p[UDP].chksum
    assert bytes(p) == pkt
    assert IP(bytes(p))[UDP].chksum == ours


@ORACLE
@given(ips, ips, u16, u16, payloads)
def test_we_read_scapy_udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> None:
    pkt = bytes(
        IP(src=ip_to_str(src), dst=ip_to_str(dst)) / UDP(sport=sport, dport=dport) / payload
    )
    ip = parse_ipv4(pkt)
    udp = parse_udp(pkt, ip.header_len)
    assert (udp.sport, udp.dport, udp.length) == (sport, dport, 8 + len(payload))
    assert udp.checksum == IP(pkt)[UDP].chksum
    assert l4_checksum_ok(src, dst, PROTO_UDP, pkt[ip.header_len :])


@ORACLE
@given(ips, ips, u16, u16, u8, u32, u32, u16, payloads, tcp_options())
def test_scapy_reads_our_tcp(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    flags: int,
    seq: int,
    ack: int,
    window: int,
    payload: bytes,
    options: list[tuple[str, Any]],
) -> None:
    raw = tcp_option_bytes(options)
    seg = build_tcp(src, dst, sport, dport, flags, seq, ack, window, payload, raw)
    pkt = build_ipv4(src, dst, PROTO_TCP, seg)
    p = IP(pkt)
    t = p[TCP]
    assert (t.sport, t.dport, t.seq, t.ack, int(t.flags), t.window) == (
        sport,
        dport,
        seq,
        ack,
        flags,
        window,
    )
    assert (t.dataofs * 4, t.reserved, t.urgptr) == (20 + len(raw), 0, 0)
    assert [o for o in t.options if o[0] != "NOP"] == [o for o in options if o[0] != "NOP"]
    ours = t.chksum
    del p.chksum, t.chksum
    assert bytes(p) == pkt
    assert IP(bytes(p))[TCP].chksum == ours


@ORACLE
@given(ips, ips, u16, u16, u8, u32, u32, u16, payloads, tcp_options())
def test_we_read_scapy_tcp(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    flags: int,
    seq: int,
    ack: int,
    window: int,
    payload: bytes,
    options: list[tuple[str, Any]],
) -> None:
    seg = TCP(
        sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=window, options=options
    )
    pkt = bytes(IP(src=ip_to_str(src), dst=ip_to_str(dst)) / seg / Raw(payload))
    ip = parse_ipv4(pkt)
    tcp = parse_tcp(pkt, ip.header_len)
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.flags, tcp.window) == (
        sport,
        dport,
        seq,
        ack,
        flags,
        window,
    )
    assert tcp.header_len == IP(pkt)[TCP].dataofs * 4 == 20 + len(tcp_option_bytes(options))
    assert tcp.checksum == IP(pkt)[TCP].chksum
    assert l4_checksum_ok(src, dst, PROTO_TCP, pkt[ip.header_len :])
    assert pkt[ip.header_len + tcp.header_len :] == payload


# ---- GRE, MPLS, VXLAN


@ORACLE
@given(u16, st.none() | u32)
def test_scapy_reads_our_gre(protocol: int, key: int | None) -> None:
    hdr = build_gre(protocol, key)
    p = GRE(hdr)
    assert (p.proto, p.version, p.chksum_present, p.seqnum_present) == (protocol, 0, 0, 0)
    assert p.key_present == (key is not None)
    if key is not None:
        assert p.key == key
    assert bytes(GRE(proto=protocol, key_present=key is not None, key=key)) == hdr


@ORACLE
@given(u16, st.booleans(), st.none() | u32, st.none() | u32, payloads)
def test_we_read_scapy_gre(
    protocol: int, csum: bool, key: int | None, seq: int | None, payload: bytes
) -> None:
    p = GRE(
        proto=protocol,
        chksum_present=csum,
        key_present=key is not None,
        key=key,
        seqnum_present=seq is not None,
        sequence_number=seq,
    ) / Raw(payload)
    pkt = bytes(p)
    gre = parse_gre(pkt)
    assert (gre.protocol, gre.key) == (protocol, key)
    assert gre.header_len == 4 + 4 * (csum + (key is not None) + (seq is not None))
    assert pkt[gre.header_len :] == payload


labels = st.integers(0, 0xFFFFF)


@ORACLE
@given(st.lists(labels, min_size=1, max_size=8), u8, labels, st.integers(0, 7), u8, st.booleans())
def test_scapy_reads_our_mpls(
    stack: list[int], ttl: int, label: int, tc: int, ttl1: int, bos: bool
) -> None:
    got = []
    layer: Any = MPLS(build_mpls_stack(stack, ttl))
    while isinstance(layer, MPLS):
        got.append((layer.label, layer.cos, layer.s, layer.ttl))
        layer = layer.payload
    assert got == [(lb, 0, int(i == len(stack) - 1), ttl) for i, lb in enumerate(stack)]
    entry = MPLS(build_mpls(label, ttl1, tc, bos))
    assert (entry.label, entry.cos, entry.s, entry.ttl) == (label, tc, bos, ttl1)
    assert bytes(MPLS(label=label, cos=tc, s=bos, ttl=ttl1)) == build_mpls(label, ttl1, tc, bos)


@ORACLE
@given(st.lists(st.tuples(labels, st.integers(0, 7), u8), min_size=1, max_size=8))
def test_we_read_scapy_mpls(stack: list[tuple[int, int, int]]) -> None:
    p = MPLS(label=stack[0][0], cos=stack[0][1], ttl=stack[0][2], s=len(stack) == 1)
    for i, (label, tc, ttl) in enumerate(stack[1:], start=2):
        p /= MPLS(label=label, cos=tc, ttl=ttl, s=i == len(stack))
    entries, end = parse_mpls_stack(bytes(p) + b"\x45")
    assert [(e.label, e.tc, e.ttl) for e in entries] == stack
    assert [e.bos for e in entries] == [i == len(stack) - 1 for i in range(len(stack))]
    assert end == 4 * len(stack)
    assert parse_mpls(bytes(p)).label == stack[0][0]


@ORACLE
@given(st.integers(0, (1 << 24) - 1))
def test_scapy_reads_our_vxlan(vni: int) -> None:
    p = VXLAN(build_vxlan(vni))
    assert (int(p.flags), p.vni, p.reserved1, p.reserved2) == (0x08, vni, 0, 0)
    assert bytes(VXLAN(vni=vni)) == build_vxlan(vni)


@ORACLE
@given(st.integers(0, (1 << 24) - 1), st.integers(0, (1 << 24) - 1), u8)
def test_we_read_scapy_vxlan(vni: int, reserved1: int, reserved2: int) -> None:
    # the reserved fields are ignored on receipt (RFC 7348)
    assert (
        parse_vxlan(bytes(VXLAN(vni=vni, flags=0x08, reserved1=reserved1, reserved2=reserved2)))
        == vni
    )


@ORACLE
@given(ips, ips, u16, st.integers(0, (1 << 24) - 1), labels, macs, macs, payloads)
def test_scapy_dissects_our_encapsulations(
    outer_src: bytes,
    outer_dst: bytes,
    sport: int,
    vni: int,
    label: int,
    mac1: bytes,
    mac2: bytes,
    payload: bytes,
) -> None:
    inner_ip = build_ipv4(b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", PROTO_UDP, payload)
    inner_frame = build_ethernet(mac1, mac2, ETH_P_IP, inner_ip)

    def outer(proto: int, body: bytes) -> Any:
        frame = build_ethernet(mac2, mac1, ETH_P_IP, build_ipv4(outer_src, outer_dst, proto, body))
        return Ether(frame)

    vxlan = outer(
        PROTO_UDP,
        build_udp(outer_src, outer_dst, sport, UDP_PORT_VXLAN, build_vxlan(vni) + inner_frame),
    )
    # decode by our port, not scapy's guess: a source port of 53 would read as DNS
    vxlan[UDP].decode_payload_as(VXLAN)
    assert vxlan[VXLAN].vni == vni
    assert bytes(vxlan[VXLAN].payload) == inner_frame
    assert vxlan[VXLAN][IP].src == "10.0.0.1"

    mpls_udp = outer(
        PROTO_UDP,
        build_udp(outer_src, outer_dst, sport, UDP_PORT_MPLS, build_mpls(label) + inner_ip),
    )
    mpls_udp[UDP].decode_payload_as(MPLS)
    assert mpls_udp[MPLS].label == label and mpls_udp[MPLS].s == 1
    assert bytes(mpls_udp[MPLS].payload) == inner_ip

    mpls_gre = outer(PROTO_GRE, build_gre(ETH_P_MPLS) + build_mpls(label) + inner_ip)
    assert mpls_gre[GRE].proto == ETH_P_MPLS and mpls_gre[MPLS].label == label
    assert mpls_gre[MPLS][IP].dst == "10.0.0.2"

    teb = outer(PROTO_GRE, build_gre(ETH_P_TEB, key=vni) + inner_frame)
    assert teb[GRE].key == vni and bytes(teb[GRE].payload) == inner_frame


# ---- DHCP


def ip_strs(n_min: int, n_max: int) -> st.SearchStrategy[list[str]]:
    return st.lists(ips.map(ip_to_str), min_size=n_min, max_size=n_max)


texts = st.text("abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=30).map(str.encode)
# code -> the scapy option tuple: (name, value, ...)
DHCP_OPTIONS: dict[int, st.SearchStrategy[tuple[Any, ...]]] = {
    dhcp.MSG_TYPE: st.tuples(st.just("message-type"), st.integers(1, 8)),
    dhcp.SUBNET_MASK: st.tuples(st.just("subnet_mask"), ips.map(ip_to_str)),
    dhcp.ROUTER: ip_strs(1, 3).map(lambda a: ("router", *a)),
    dhcp.DNS: ip_strs(1, 3).map(lambda a: ("name_server", *a)),
    dhcp.HOSTNAME: st.tuples(st.just("hostname"), texts),
    dhcp.DOMAIN_NAME: st.tuples(st.just("domain"), texts),
    dhcp.MTU: st.tuples(st.just("interface-mtu"), st.integers(68, 0xFFFF)),
    dhcp.BROADCAST: st.tuples(st.just("broadcast_address"), ips.map(ip_to_str)),
    dhcp.REQUESTED_IP: st.tuples(st.just("requested_addr"), ips.map(ip_to_str)),
    dhcp.LEASE_TIME: st.tuples(st.just("lease_time"), u32),
    dhcp.SERVER_ID: st.tuples(st.just("server_id"), ips.map(ip_to_str)),
    dhcp.PARAM_LIST: st.lists(st.integers(1, 254), min_size=1, max_size=12).map(
        lambda c: ("param_req_list", c)
    ),
}


def wire(code: int, option: tuple[Any, ...]) -> bytes:
    """The value of a scapy-style option tuple as RFC 2132 puts it on the wire."""
    values = option[1:]
    if code in (dhcp.SUBNET_MASK, dhcp.ROUTER, dhcp.DNS, dhcp.BROADCAST, dhcp.REQUESTED_IP):
        return b"".join(ip_to_bytes(v) for v in values)
    if code == dhcp.SERVER_ID:
        return ip_to_bytes(values[0])
    if code in (dhcp.HOSTNAME, dhcp.DOMAIN_NAME):
        return bytes(values[0])
    if code == dhcp.MTU:
        return int(values[0]).to_bytes(2, "big")
    if code == dhcp.LEASE_TIME:
        return int(values[0]).to_bytes(4, "big")
    if code == dhcp.PARAM_LIST:
        return bytes(values[0])
    if code == dhcp.MSG_TYPE:
        return bytes((values[0],))
    return bytes(values[0])  # an option scapy does not know: (code, raw bytes)


@st.composite
def dhcp_options(draw: st.DrawFn) -> list[tuple[int, tuple[Any, ...]]]:
    """A few DHCP options as (code, scapy option tuple), each code once, in random order."""
    codes = draw(st.lists(st.sampled_from(sorted(DHCP_OPTIONS)), unique=True, max_size=8))
    out = [(code, draw(DHCP_OPTIONS[code])) for code in codes]
    for code in draw(st.lists(st.integers(224, 254), unique=True, max_size=2)):  # private use
        out.append((code, (code, draw(st.binary(min_size=1, max_size=20)))))
    return draw(st.permutations(out))


@ORACLE
@given(
    op=st.sampled_from([dhcp.BOOTREQUEST, dhcp.BOOTREPLY]),
    xid=u32,
    chaddr=macs,
    addrs=st.tuples(ips, ips, ips, ips),
    flags=st.sampled_from([0, dhcp.FLAG_BROADCAST]),
    options=dhcp_options(),
)
def test_scapy_reads_our_dhcp(
    op: int,
    xid: int,
    chaddr: bytes,
    addrs: tuple[bytes, bytes, bytes, bytes],
    flags: int,
    options: list[tuple[int, tuple[Any, ...]]],
) -> None:
    yiaddr, siaddr, ciaddr, giaddr = addrs
    raw_options = [(code, wire(code, option)) for code, option in options]
    msg = dhcp.build_dhcp(op, xid, chaddr, yiaddr, siaddr, ciaddr, giaddr, flags, raw_options)
    p = BOOTP(msg)
    assert (p.op, p.htype, p.hlen, p.hops, p.xid, p.secs, int(p.flags)) == (
        op,
        1,
        6,
        0,
        xid,
        0,
        flags,
    )
    assert (p.ciaddr, p.yiaddr) == (ip_to_str(ciaddr), ip_to_str(yiaddr))
    assert (p.siaddr, p.giaddr) == (ip_to_str(siaddr), ip_to_str(giaddr))
    assert p.chaddr[:6] == chaddr and p.chaddr[6:] == bytes(10)
    got = [o for o in p[DHCP].options if o not in ("end", "pad")]
    assert got == [option for _, option in options]
    assert "end" in p[DHCP].options
    # scapy encodes the same message the same way, up to our padding to 300 bytes
    theirs = bytes(
        BOOTP(
            op=op,
            xid=xid,
            flags=flags,
            chaddr=chaddr,
            ciaddr=ip_to_str(ciaddr),
            yiaddr=ip_to_str(yiaddr),
            siaddr=ip_to_str(siaddr),
            giaddr=ip_to_str(giaddr),
        )
        / DHCP(options=[option for _, option in options] + ["end"])
    )
    assert msg[: len(theirs)] == theirs and msg[len(theirs) :] == bytes(len(msg) - len(theirs))


@ORACLE
@given(
    op=st.sampled_from([dhcp.BOOTREQUEST, dhcp.BOOTREPLY]),
    xid=u32,
    secs=u16,
    chaddr=macs,
    addrs=st.tuples(ips, ips, ips, ips),
    flags=st.sampled_from([0, dhcp.FLAG_BROADCAST]),
    options=dhcp_options(),
)
def test_we_read_scapy_dhcp(
    op: int,
    xid: int,
    secs: int,
    chaddr: bytes,
    addrs: tuple[bytes, bytes, bytes, bytes],
    flags: int,
    options: list[tuple[int, tuple[Any, ...]]],
) -> None:
    yiaddr, siaddr, ciaddr, giaddr = addrs
    p = BOOTP(
        op=op,
        xid=xid,
        secs=secs,
        flags=flags,
        chaddr=chaddr,
        ciaddr=ip_to_str(ciaddr),
        yiaddr=ip_to_str(yiaddr),
        siaddr=ip_to_str(siaddr),
        giaddr=ip_to_str(giaddr),
    ) / DHCP(options=[option for _, option in options] + ["end"])
    parsed = dhcp.parse_dhcp(bytes(p))
    assert parsed == dhcp.Dhcp(
        op,
        1,
        6,
        xid,
        secs,
        flags,
        ciaddr,
        yiaddr,
        siaddr,
        giaddr,
        chaddr,
        {code: wire(code, option) for code, option in options},
    )
    types = [o[1] for c, o in options if c == dhcp.MSG_TYPE]
    assert parsed.msg_type == (types[0] if types else None)
