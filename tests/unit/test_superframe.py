"""Super-frames through the pipeline once: whatever a TCP super-frame becomes (cut at a tunnel,
or whole to a local vif or a VLAN) equals, after segmentation, what its segments fed one by one
give, with the same drops, vif, flow and underlay state; so does a batch of tunnel payloads
whose segments are coalesced (GRO). Hypothesis drives the cases."""

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vrouter_setup import (
    FABRIC_VIF,
    NODES,
    VLAN,
    VM1,
    VM2,
    VM3,
    VM4,
    VNI,
    Vm,
    build_node,
    mplsogre_frame,
    udp_frame,
)

from openvpc.model.forwarding import VROUTER_MAC, Encap, FlowKey, Mode
from openvpc.packet.ethernet import ETH_P_IP, ETH_P_MPLS, build_ethernet
from openvpc.packet.ipv4 import PROTO_TCP, build_ipv4
from openvpc.packet.l4 import build_tcp
from openvpc.packet.tunnel import build_gre, build_mpls, build_vxlan
from openvpc.vrouter import pipeline
from openvpc.vrouter.flow import FlowAction
from openvpc.vrouter.gso import coalesce, ethernet_l3, parse_super, segment
from openvpc.vrouter.offload import (
    F_NEEDS_CSUM,
    GSO_ECN,
    GSO_TCPV4,
    build_vnet_hdr,
    parse_vnet_hdr,
    super_vnet_hdr,
    tap_super,
)
from openvpc.vrouter.superframe import (
    SuperEmit,
    gre_payload,
    process_overlay_batch,
    process_super,
)
from openvpc.vrouter.tables import Tables

N1, N2 = NODES[1], NODES[2]
FLAGS = {"A": 0x10, "PA": 0x18, "FA": 0x11, "FPA": 0x19, "CA": 0x90, "CPA": 0x98, "SA": 0x12}
TS_OPTION = b"\x01\x01\x08\x0a" + bytes(range(8))


def tcp_super(
    src: Vm,
    dst: bytes,
    payload: bytes,
    flags: int,
    *,
    ttl: int = 64,
    df: bool = True,
    dst_mac: bytes = VROUTER_MAC,
) -> bytes:
    """A TSO super-frame as a VM's TAP hands it over (here with a full TCP checksum)."""
    seg = build_tcp(
        src.ip, dst, 40000, 5201, flags, seq=0xFFFFF000, ack=9, payload=payload, options=TS_OPTION
    )
    packet = build_ipv4(src.ip, dst, PROTO_TCP, seg, ttl=ttl, df=df, ident=0xFFF0)
    return build_ethernet(dst_mac, src.mac, ETH_P_IP, packet)


def expand(emits: list[SuperEmit]) -> list[pipeline.Emit]:
    """Super emits cut the way the kernel would cut them (tagged frames too)."""
    out: list[pipeline.Emit] = []
    for vif, data, mss in emits:
        if mss:
            out.extend((vif, piece) for piece in segment(data, mss, parse_super(data, True)))
        else:
            out.append((vif, data))
    return out


def state(t: Tables) -> object:
    """Everything forwarding may change, for comparing two vRouters."""
    flows = {
        k: (f.action, f.packets, f.octets, f.tcp_flags, f.held, f.last_used)
        for k, f in t.flows.flows.items()
    }
    return (dict(t.drops), {i: v.stats for i, v in t.vifs.items()}, flows, t.pending)


def key(src: Vm, dst: Vm) -> FlowKey:
    return (1, PROTO_TCP, src.ip, dst.ip, 40000, 5201)


@dataclass(frozen=True)
class Case:
    encap: Encap
    mode: Mode  # l2: bridged to the destination's MAC; l2_l3: routed (an IP FIB hit)
    dst: Vm
    policy: str  # "none" | "miss" | "decide" (the vRouter makes the flow) | "forward" | ...
    decrement_ttl: bool
    fabric_mtu: int
    neighbor: bool
    kernel_routed: bool

    def node(self) -> Tables:
        t = build_node(
            1,
            self.encap,
            policy=self.policy != "none",
            neighbor=self.neighbor,
            decrement_ttl=self.decrement_ttl,
            fabric_mtu=self.fabric_mtu,
        )
        t.fabric.kernel_routed = self.kernel_routed
        t.vrfs[1].mode = self.mode
        for vif in t.vifs.values():
            vif.agent_decides = self.policy != "decide"
        action = {"forward": FlowAction.FORWARD, "drop": FlowAction.DROP, "nat": FlowAction.NAT}
        if self.policy in action:
            nat = (VM1.ip, self.dst.ip, 40001, 5201) if self.policy == "nat" else None
            pipeline.install_flow(t, key(VM1, self.dst), action[self.policy], 0.0, nat=nat)
        return t


cases = st.builds(
    Case,
    encap=st.sampled_from(list(Encap)),
    mode=st.sampled_from([Mode.L3, Mode.L3, Mode.L2, Mode.L2_L3]),
    dst=st.sampled_from([VM2, VM3, VM4]),
    policy=st.sampled_from(["none", "none", "forward", "forward", "miss", "decide", "drop", "nat"]),
    decrement_ttl=st.booleans(),
    fabric_mtu=st.sampled_from([1500, 1500, 1400, 9000]),
    neighbor=st.sampled_from([True, True, True, False]),
    kernel_routed=st.booleans(),
)
# mostly segments that fit every encapsulation, sometimes ones that need fragmenting
sizes = st.one_of(st.integers(400, 1300), st.integers(400, 1300), st.integers(1300, 1460))
# what a VM may hand over: from the minimum MSS to its MTU (1500) less 52 bytes of headers
vm_sizes = st.one_of(st.integers(536, 1300), st.integers(536, 1300), st.integers(1300, 1448))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=cases,
    full=st.integers(0, 8),
    extra=st.integers(0, 1460),
    mss=vm_sizes,
    flags=st.sampled_from(list(FLAGS.values())),
    ttl=st.sampled_from([64, 64, 64, 1]),
    df=st.booleans(),
)
def test_a_super_frame_forwards_as_its_segments_do(
    case: Case, full: int, extra: int, mss: int, flags: int, ttl: int, df: bool
) -> None:
    size = max(1, full * mss + extra)  # full segments and a short one
    payload = bytes(i % 251 for i in range(size))
    dst_mac = case.dst.mac if case.mode is Mode.L2 else VROUTER_MAC
    frame = tcp_super(VM1, case.dst.ip, payload, flags, ttl=ttl, df=df, dst_mac=dst_mac)
    whole, one_by_one = case.node(), case.node()
    got = expand(process_super(whole, frame, VM1.vif, mss, 1.0))
    want = [
        out
        for seg in segment(frame, mss)
        for out in pipeline.process(one_by_one, seg, VM1.vif, 1.0)
    ]
    assert got == want
    assert state(whole) == state(one_by_one)


@settings(max_examples=60, deadline=None)
@given(
    full=st.integers(0, 8),
    extra=st.integers(0, 1460),
    mss=sizes,
    flags=st.sampled_from(list(FLAGS.values())),
    dst=st.sampled_from([VM1, VM2, VM3]),
    policy=st.booleans(),
)
def test_a_tagged_super_frame_from_the_fabric_forwards_as_its_segments_do(
    full: int, extra: int, mss: int, flags: int, dst: Vm, policy: bool
) -> None:
    size = max(1, full * mss + extra)
    inner = tcp_super(VM4, dst.ip, bytes(i % 253 for i in range(size)), flags)[14:]
    frame = build_ethernet(N1.mac, N2.mac, ETH_P_IP, inner, vlan=VLAN)
    whole, one_by_one = (build_node(1, Encap.VLAN, policy=policy) for _ in range(2))
    for t in (whole, one_by_one):
        pipeline.install_flow(t, key(VM4, dst), FlowAction.FORWARD, 0.0)
    got = expand(process_super(whole, frame, FABRIC_VIF, mss, 1.0))
    pieces = segment(frame, mss, parse_super(frame, True))
    want = [out for seg in pieces for out in pipeline.process(one_by_one, seg, FABRIC_VIF, 1.0)]
    assert got == want
    assert state(whole) == state(one_by_one)


PAYLOAD = bytes(i % 256 for i in range(10 * 1400 + 77))


def test_local_delivery_leaves_whole_and_a_tunnel_cuts_once_per_segment() -> None:
    t = build_node(1, Encap.VXLAN, policy=True)
    for dst in (VM2, VM4):
        pipeline.install_flow(t, key(VM1, dst), FlowAction.FORWARD, 0.0)
    frame = tcp_super(VM1, VM2.ip, PAYLOAD, FLAGS["PA"])
    ((vif, data, mss),) = process_super(t, frame, VM1.vif, 1400, 1.0)
    assert (vif, mss) == (VM2.vif, 1400)
    assert data[14:] == frame[14:] and data[:6] == VM2.mac
    flow = t.flows.flows[key(VM1, VM2)]
    assert (flow.packets, t.vifs[VM1.vif].stats.rx_packets, t.vifs[VM2.vif].stats.tx_packets) == (
        11,
        11,
        11,
    )
    # 1450 bytes of overlay MTU: 1380 bytes of payload and 52 of headers fit
    out = process_super(t, tcp_super(VM1, VM4.ip, PAYLOAD, FLAGS["PA"]), VM1.vif, 1380, 1.0)
    assert [(vif, mss) for vif, _, mss in out] == [(FABRIC_VIF, 0)] * 11
    assert t.vifs[FABRIC_VIF].stats.tx_packets == 11


def test_a_vlan_super_frame_leaves_whole_on_the_fabric() -> None:
    t = build_node(1, Encap.VLAN)
    frame = tcp_super(VM1, VM4.ip, PAYLOAD, FLAGS["A"])
    ((vif, data, mss),) = process_super(t, frame, VM1.vif, 1400, 1.0)
    assert (vif, mss) == (FABRIC_VIF, 1400)
    assert data[:12] == N2.mac + N1.mac and data[12:16] == b"\x81\x00" + VLAN.to_bytes(2, "big")


@pytest.mark.parametrize(
    ("vif", "mss", "frame", "reason"),
    [
        (VM1.vif, 0, tcp_super(VM1, VM2.ip, PAYLOAD, 0x10), "gso_size_invalid"),
        (VM1.vif, 1400, b"\x00" * 30, "gso_not_ipv4"),
        (VM1.vif, 1400, build_ethernet(VROUTER_MAC, VM1.mac, ETH_P_IP, b"\x45"), "short_ipv4"),
    ],
)
def test_a_malformed_super_frame_is_counted(vif: int, mss: int, frame: bytes, reason: str) -> None:
    t = build_node(1)
    assert process_super(t, frame, vif, mss, 1.0) == []
    assert t.drops == {reason: 1}


# -- receive side: coalescing (GRO) -------------------------------------------------------
def tunnel_payload(kind: str, inner_ip: bytes, dst: Vm) -> bytes:
    """What node 2's vRouter sends node 1 for `inner_ip`, without the outer IP and UDP."""
    if kind == "vxlan":
        return build_vxlan(VNI) + build_ethernet(dst.mac, VROUTER_MAC, ETH_P_IP, inner_ip)
    return build_mpls(N1.label) + inner_ip


@settings(max_examples=80, deadline=None)
@given(
    full=st.integers(1, 8),
    extra=st.integers(0, 1460),
    mss=sizes,
    flags=st.sampled_from(list(FLAGS.values())),
    noise=st.integers(0, 3),
)
def test_coalesced_segments_cut_back_into_the_same_segments(
    full: int, extra: int, mss: int, flags: int, noise: int
) -> None:
    segments = segment(tcp_super(VM1, VM2.ip, bytes(full * mss + extra), flags), mss)
    other = udp_frame(VM1, VM2.ip)
    frames = [other] * noise + segments + [other] * noise
    groups = coalesce(frames, ethernet_l3)
    expanded = [piece for g in groups for piece in (segment(g.data, g.mss) if g.mss else [g.data])]
    assert expanded == frames
    merged = [g for g in groups if g.mss]
    if len(segments) > 1 and flags != FLAGS["SA"]:  # SYN, RST, URG segments stay alone
        assert [(g.mss, g.parts) for g in merged] == [(mss, tuple(segments))]
    else:
        assert merged == []


def test_segments_that_do_not_follow_on_are_not_merged() -> None:
    a, b, c = segment(tcp_super(VM1, VM2.ip, bytes(3000), FLAGS["A"]), 1000)
    short_first = segment(tcp_super(VM1, VM2.ip, bytes(1500), FLAGS["A"]), 500)[2]
    changed = bytearray(b)
    changed[14 + 20 + 14] ^= 1  # another window
    pure_ack = tcp_super(VM1, VM2.ip, b"", FLAGS["A"])
    for frames in ([a, c], [b, a], [a, bytes(changed)], [short_first, b], [pure_ack, pure_ack]):
        assert [g.mss for g in coalesce(frames, ethernet_l3)] == [0, 0]


@settings(max_examples=80, deadline=None)
@given(
    kind=st.sampled_from(["vxlan", "mpls"]),
    dst=st.sampled_from([VM1, VM2]),
    full=st.integers(1, 8),
    extra=st.integers(0, 1400),
    mss=st.integers(400, 1398),
    flags=st.sampled_from(list(FLAGS.values())),
    policy=st.sampled_from(["none", "forward", "miss", "drop"]),
)
def test_a_coalesced_tunnel_batch_forwards_as_its_payloads_do(
    kind: str, dst: Vm, full: int, extra: int, mss: int, flags: int, policy: str
) -> None:
    size = max(1, full * mss + extra)
    inner = [s[14:] for s in segment(tcp_super(VM4, dst.ip, bytes(size), flags), mss)]
    payloads = [tunnel_payload(kind, ip, dst) for ip in inner]
    whole, one_by_one = (build_node(1, policy=policy != "none") for _ in range(2))
    action = {"forward": FlowAction.FORWARD, "drop": FlowAction.DROP}
    for t in (whole, one_by_one):
        if policy in action:
            pipeline.install_flow(t, key(VM4, dst), action[policy], 0.0)
    got = expand(process_overlay_batch(whole, kind, payloads, 1.0))
    want = [out for p in payloads for out in pipeline.process_overlay(one_by_one, kind, p, 1.0)]
    assert got == want
    assert state(whole) == state(one_by_one)


def test_a_tunnel_batch_of_one_flow_reaches_the_vm_as_one_super_frame() -> None:
    t = build_node(1)
    inner = [s[14:] for s in segment(tcp_super(VM4, VM1.ip, PAYLOAD, FLAGS["PA"]), 1398)]
    payloads = [tunnel_payload("vxlan", ip, VM1) for ip in inner]
    ((vif, data, mss),) = process_overlay_batch(t, "vxlan", payloads, 1.0)
    assert (vif, mss, len(data)) == (VM1.vif, 1398, 14 + 20 + 32 + len(PAYLOAD))
    assert t.vifs[FABRIC_VIF].stats.rx_packets == t.vifs[VM1.vif].stats.tx_packets == 11


@settings(max_examples=40, deadline=None)
@given(
    full=st.integers(1, 6),
    extra=st.integers(0, 1400),
    mss=st.integers(400, 1398),
    policy=st.sampled_from(["none", "forward", "miss"]),
)
def test_plain_gre_packets_read_together_forward_as_they_do_one_by_one(
    full: int, extra: int, mss: int, policy: str
) -> None:
    inner = [s[14:] for s in segment(tcp_super(VM4, VM1.ip, bytes(full * mss + extra), 0x10), mss)]
    packets = [mplsogre_frame(N2, N1, N1.label, ip)[14:] for ip in inner]
    whole, one_by_one = (build_node(1, Encap.MPLSOGRE, policy=policy != "none") for _ in range(2))
    for t in (whole, one_by_one):
        if policy == "forward":
            pipeline.install_flow(t, key(VM4, VM1), FlowAction.FORWARD, 0.0)
    payloads = [gre_payload(whole, p) for p in packets]
    assert None not in payloads
    got = expand(process_overlay_batch(whole, "mpls", [p for p in payloads if p], 1.0))
    frames = [N1.mac + N1.mac + b"\x08\x00" + p for p in packets]
    want = [out for f in frames for out in pipeline.process(one_by_one, f, FABRIC_VIF, 1.0)]
    assert got == want
    # the fabric vif counts the tunnel payloads as it does for UDP tunnels: without the outer
    # IPv4 and GRE headers, which the raw socket path counted
    fabric_a, fabric_b = whole.vifs[FABRIC_VIF].stats, one_by_one.vifs[FABRIC_VIF].stats
    assert fabric_b.rx_bytes - fabric_a.rx_bytes == len(packets) * (14 + 20 + 4)
    fabric_a.rx_bytes = fabric_b.rx_bytes
    # a held packet is kept in the form it came (MPLS over UDP, or GRE): the same once released
    released = [
        pipeline.install_flow(t, key(VM4, VM1), FlowAction.FORWARD, 2.0)
        for t in (whole, one_by_one)
    ]
    assert released[0] == released[1]
    assert state(whole) == state(one_by_one)


def test_gre_packets_that_are_not_plain_are_left_to_the_whole_pipeline() -> None:
    t = build_node(1, Encap.MPLSOGRE)
    good = mplsogre_frame(N2, N1, N1.label, udp_frame(VM4, VM1.ip)[14:])[14:]
    assert gre_payload(t, good) == build_mpls(N1.label) + udp_frame(VM4, VM1.ip)[14:]
    keyed = good[:20] + build_gre(ETH_P_MPLS, key=7) + good[24:]
    other_node = good[:16] + N2.ip + good[20:]
    fragment = good[:6] + b"\x20\x00" + good[8:]  # MF set (its checksum is wrong too)
    bad_checksum = good[:10] + bytes(2) + good[12:]
    for packet in (keyed, other_node, fragment, bad_checksum, good[:30]):
        assert gre_payload(t, packet) is None


def test_the_vnet_header_of_a_super_frame_says_where_to_cut_and_sum() -> None:
    plain = tcp_super(VM1, VM2.ip, PAYLOAD, FLAGS["A"])
    tagged = build_ethernet(N2.mac, N1.mac, ETH_P_IP, plain[14:], vlan=VLAN)
    for frame, l4 in ((plain, 34), (tagged, 38)):
        hdr = parse_vnet_hdr(super_vnet_hdr(frame, 1400))
        assert hdr == (F_NEEDS_CSUM, GSO_TCPV4, l4 + 32, 1400, l4, 16)
    cwr = tcp_super(VM1, VM2.ip, PAYLOAD, FLAGS["CA"])
    assert parse_vnet_hdr(super_vnet_hdr(cwr, 1400)).gso_type == GSO_TCPV4 | GSO_ECN
    read = build_vnet_hdr(F_NEEDS_CSUM, GSO_TCPV4 | GSO_ECN, 66, 1400, 34, 16) + cwr
    assert tap_super(read) == (cwr, 1400)
    assert tap_super(build_vnet_hdr() + plain) is None
