"""One tenant or one VM exhausts only its own share of a vRouter: per-VRF flow quotas,
per-source HOLD limits and punt token buckets, short HOLD and DROP lifetimes, and bounded
TAP super-frames (segment size and count). Frames in, emits and counters out."""

from collections import Counter
from typing import Any

import pytest
from vrouter_setup import (
    AGENT_VIF,
    FABRIC_VIF,
    NODES,
    VM1,
    VM2,
    VM4,
    VRF,
    Vm,
    arp_request_from,
    build_node,
    dhcp_discover,
    udp_frame,
    vxlan_frame,
)

from openvpc.model.forwarding import VROUTER_MAC, FlowKey
from openvpc.packet.errors import Malformed
from openvpc.packet.ethernet import ETH_P_IP, build_ethernet
from openvpc.packet.ipv4 import PROTO_TCP, build_ipv4
from openvpc.packet.l4 import TCP_ACK, build_tcp
from openvpc.vrouter import pipeline
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.dump import stats
from openvpc.vrouter.flow import FlowAction, FlowTable
from openvpc.vrouter.gso import segment
from openvpc.vrouter.limits import (
    DEFAULT_FLOW_CAPACITY,
    MAX_FLOW_CAPACITY,
    MAX_SEGMENTS,
    MIN_FLOW_CAPACITY,
    MIN_MSS,
    SEGMENT_CAP,
    VRF_SHARE,
    NodeLimits,
    flow_capacity_for,
    max_segments,
)
from openvpc.vrouter.nexthop import EncapNH
from openvpc.vrouter.offload import segment_tcp4
from openvpc.vrouter.punt import Punt, parse_punt
from openvpc.vrouter.ratelimit import PuntLimiter, TokenBucket
from openvpc.vrouter.superframe import process_super
from openvpc.vrouter.tables import Route, Tables, Vif, VifKind, Vrf

N1, N2 = NODES[1], NODES[2]
OTHER_VRF = 2
# another tenant on node 1, with the very addresses of vm1 and vm2
OTHER1 = Vm("other1", 1, 7, bytes.fromhex("020000070007"), VM1.ip, VM1.gateway)
OTHER2 = Vm("other2", 1, 8, bytes.fromhex("020000070008"), VM2.ip, VM2.gateway)
LOOSE = NodeLimits(vif_hold_limit=100_000, vif_punt_rate=1e6, vif_punt_burst=100_000)


def with_other_tenant(t: Tables) -> Tables:
    """Add a second VRF on the node with two VMs, both under flow policy."""
    t.add_vrf(Vrf(OTHER_VRF, "vpc-b"))
    for vm in (OTHER1, OTHER2):
        t.add_vif(
            Vif(vm.vif, VifKind.VIRTUAL, f"tap-{vm.name}", vrf=OTHER_VRF, mac=vm.mac,
                ip=vm.ip, prefix_len=24, gateway_ip=vm.gateway, policy=True)
        )  # fmt: skip
        t.add_nexthop(vm.encap_nh, EncapNH(vm.vif, vm.mac, VROUTER_MAC))
        t.add_route(OTHER_VRF, vm.ip, 32, Route(vm.encap_nh, mac=vm.mac))
    return t


def send(t: Tables, frame: bytes, vif: int, now: float = 0.0) -> list[pipeline.Emit]:
    return pipeline.process(t, frame, vif, now)


def punts(emits: list[pipeline.Emit]) -> list[int]:
    return [parse_punt(data)[0].reason for vif, data in emits if vif == AGENT_VIF]


def drops(t: Tables) -> Counter[str]:
    return Counter({k: v for k, v in t.drops.items() if v})


def flood(t: Tables, src: Vm, dst: Vm, count: int, now: float = 0.0, first: int = 1) -> int:
    """`count` first packets of new flows from `src`; returns how many were punted."""
    n = 0
    for sport in range(first, first + count):
        n += len(punts(send(t, udp_frame(src, dst.ip, sport=sport), src.vif, now)))
    return n


# -- token buckets --------------------------------------------------------------------------
def test_a_bucket_gives_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate=10.0, burst=3.0, tokens=3.0, stamp=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.1) and not bucket.take(0.1)  # one token in 0.1 s at 10/s
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # burst caps
    assert not bucket.take(50.0)  # time going backwards adds nothing


def test_each_source_has_its_own_bucket_and_full_ones_are_forgotten() -> None:
    limiter = PuntLimiter(rate=1.0, burst=2)
    assert [limiter.allow((3, 1), 0.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow((4, 1), 0.0)
    assert limiter.prune(0.5) == 0 and len(limiter.buckets) == 2
    assert limiter.prune(2.0) == 2 and limiter.buckets == {}


# -- limits ---------------------------------------------------------------------------------
def test_default_limits_give_each_vrf_a_share_of_the_table() -> None:
    assert NodeLimits().vrf_quota == NodeLimits().flow_capacity // VRF_SHARE
    assert NodeLimits(flow_capacity=100).vrf_quota == 25
    assert NodeLimits(flow_capacity=100, vrf_flow_quota=100).vrf_quota == 100
    t = build_node()
    assert t.flows.vrf_quota == t.flows.capacity // VRF_SHARE


@pytest.mark.parametrize(
    "bad",
    [
        {"flow_capacity": 0},
        {"flow_capacity": 10, "vrf_flow_quota": 11},
        {"vrf_flow_quota": 0},
        {"vif_hold_limit": 0},
        {"vif_punt_rate": 0.0},
        {"vif_punt_burst": 0},
    ],
)
def test_bad_limits_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        NodeLimits(**bad)


# -- per-VRF quota --------------------------------------------------------------------------
def test_a_vrf_that_fills_its_quota_leaves_room_for_another_tenant() -> None:
    limits = NodeLimits(40, None, LOOSE.vif_hold_limit, LOOSE.vif_punt_rate, LOOSE.vif_punt_burst)
    t = with_other_tenant(build_node(policy=True, limits=limits))
    assert flood(t, VM1, VM2, 30) == 10  # a quarter of 40
    assert drops(t) == {Drop.FLOW_QUOTA: 20}
    assert t.flows.per_vrf == {VRF: 10}
    # the other tenant still makes flows, and its traffic flows once the agent decides
    [(vif, data)] = send(t, udp_frame(OTHER1, OTHER2.ip), OTHER1.vif)
    assert vif == AGENT_VIF and parse_punt(data)[0].reason == Punt.FLOW_MISS
    key: FlowKey = (OTHER_VRF, 17, OTHER1.ip, OTHER2.ip, 40000, 5001)
    reverse: FlowKey = (OTHER_VRF, 17, OTHER2.ip, OTHER1.ip, 5001, 40000)
    released = pipeline.install_flow(t, key, FlowAction.FORWARD, 0.0, reverse=reverse)
    assert [vif for vif, _ in released] == [OTHER2.vif]
    assert t.flows.per_vrf == {VRF: 10, OTHER_VRF: 2}


# -- HOLD entries per source ------------------------------------------------------------------
def test_a_vif_may_hold_only_so_many_first_packets() -> None:
    limits = NodeLimits(vif_hold_limit=3, vif_punt_rate=1e6, vif_punt_burst=100_000)
    t = with_other_tenant(build_node(policy=True, limits=limits))
    assert flood(t, VM1, VM2, 5) == 3
    assert drops(t) == {Drop.FLOW_HOLD_LIMIT: 2}
    # vm2 (same VRF) and the other tenant hold their own
    assert flood(t, VM2, VM1, 3) == 3
    assert flood(t, OTHER1, OTHER2, 3) == 3
    assert stats(t)["flows"]["holds"] == {"3/1": 3, "4/1": 3, "7/2": 3}
    # a verdict frees a place
    key: FlowKey = (VRF, 17, VM1.ip, VM2.ip, 1, 5001)
    pipeline.install_flow(t, key, FlowAction.FORWARD, 0.0)
    assert flood(t, VM1, VM2, 2, first=100) == 1
    # and HOLD entries the agent never answers go after the short HOLD lifetime
    t.expire(t.flows.timeouts.hold)
    assert t.flows.holds == {}
    assert drops(t)[Drop.HOLD_EXPIRED] == 9  # the held first packets, counted
    assert flood(t, VM1, VM2, 3, now=t.flows.timeouts.hold, first=200) == 3


def test_flow_misses_from_the_fabric_are_charged_per_vrf() -> None:
    limits = NodeLimits(vif_hold_limit=2, vif_punt_rate=1e6, vif_punt_burst=100_000)
    t = build_node(policy=True, limits=limits)
    out = []
    for sport in range(1, 5):
        inner = udp_frame(VM4, VM1.ip, sport=sport, dst_mac=VM1.mac)
        out += send(t, vxlan_frame(N2, N1, 100, inner), FABRIC_VIF)
    assert punts(out) == [Punt.FLOW_MISS] * 2
    assert drops(t) == {Drop.FLOW_HOLD_LIMIT: 2}
    assert t.flows.holds == {(FABRIC_VIF, VRF): 2}
    assert flood(t, VM1, VM2, 1) == 1  # the VMs' own share is untouched


# -- punts per source -----------------------------------------------------------------------
def test_punts_are_rate_limited_per_vif_whatever_their_kind() -> None:
    limits = NodeLimits(vif_punt_rate=10.0, vif_punt_burst=4)
    t = build_node(policy=True, limits=limits)
    unknown = bytes([10, 0, 1, 77])
    arp, dhcp = arp_request_from(VM1, unknown), dhcp_discover(VM1)
    frames = [arp, dhcp, udp_frame(VM1, VM2.ip), arp, dhcp, udp_frame(VM1, VM2.ip, sport=2)]
    out = [e for f in frames for e in send(t, f, VM1.vif)]
    assert punts(out) == [Punt.ARP, Punt.DHCP, Punt.FLOW_MISS, Punt.ARP]
    assert drops(t) == {Drop.PUNT_RATE_LIMITED: 2}
    # a refused first packet leaves no HOLD entry behind
    assert len(t.flows.flows) == 1
    # vm2 has its own bucket; vm1 gets one token back in 0.1 s
    assert punts(send(t, arp_request_from(VM2, unknown), VM2.vif)) == [Punt.ARP]
    assert punts(send(t, dhcp_discover(VM1), VM1.vif, now=0.1)) == [Punt.DHCP]
    assert punts(send(t, dhcp_discover(VM1), VM1.vif, now=0.1)) == []


def test_a_flooding_vm_does_not_starve_another_of_new_flows() -> None:
    """The issue's case at the table level: one VM sends thousands of new 5-tuples at one
    instant; another tenant's VM on the node still gets every first packet to the agent."""
    t = with_other_tenant(build_node(policy=True))
    assert flood(t, VM1, VM2, 5000) <= NodeLimits().vif_hold_limit
    d = drops(t)
    assert d[Drop.FLOW_HOLD_LIMIT] + d[Drop.PUNT_RATE_LIMITED] == 5000 - len(t.flows.flows)
    assert flood(t, OTHER1, OTHER2, 20) == 20


# -- lifetimes --------------------------------------------------------------------------------
def test_denied_flows_age_fast_and_allowed_ones_do_not() -> None:
    ft = FlowTable()
    denied: FlowKey = (1, 17, VM1.ip, VM2.ip, 1, 2)
    allowed: FlowKey = (1, 17, VM1.ip, VM2.ip, 3, 4)
    ft.install(denied, FlowAction.DROP, 0.0)
    ft.install(allowed, FlowAction.FORWARD, 0.0)
    assert ft.timeouts.hold <= 2.0 and ft.timeouts.drop <= 10.0
    assert ft.age(ft.timeouts.drop) == [denied]
    assert list(ft.flows) == [allowed]


# -- bounded super-frames -------------------------------------------------------------------
def tcp_super(src: Vm, dst: bytes, payload: bytes, df: bool = True) -> bytes:
    seg = build_tcp(src.ip, dst, 40000, 5201, TCP_ACK, seq=1, ack=1, payload=payload)
    return build_ethernet(
        VROUTER_MAC, src.mac, ETH_P_IP, build_ipv4(src.ip, dst, PROTO_TCP, seg, df=df)
    )


BIG = bytes(60_000)


@pytest.mark.parametrize("mss", [1, 8, 64, MIN_MSS - 1])
def test_a_vm_super_frame_with_a_tiny_segment_size_is_dropped_uncut(mss: int) -> None:
    t = build_node(policy=True)
    assert process_super(t, tcp_super(VM1, VM2.ip, BIG), VM1.vif, mss, 0.0) == []
    assert drops(t) == {Drop.GSO_SIZE_INVALID: 1}
    assert t.flows.flows == {} and t.vifs[VM1.vif].stats.drops == 1
    assert t.vifs[VM2.vif].stats.tx_packets == 0


def test_a_vm_super_frame_with_too_many_segments_is_dropped_uncut() -> None:
    t = build_node()
    mss = 600  # a legal size, but 101 segments from one frame at an MTU of 1500
    assert max_segments(t.vifs[VM1.vif].mtu) == MAX_SEGMENTS
    assert process_super(t, tcp_super(VM1, VM2.ip, BIG), VM1.vif, mss, 0.0) == []
    assert drops(t) == {Drop.GSO_TOO_MANY_SEGMENTS: 1}
    # a small-MTU guest may send as many as a 64 KB packet makes at its MTU
    assert max_segments(576) == -(-0xFFFF // MIN_MSS) == SEGMENT_CAP


def test_segments_beyond_the_vif_mtu_are_refused_with_one_frag_needed() -> None:
    t = build_node()
    [(vif, reply, mss)] = process_super(t, tcp_super(VM1, VM2.ip, BIG), VM1.vif, 1461, 0.0)
    assert (vif, mss) == (VM1.vif, 0)
    assert drops(t) == {Drop.GSO_SIZE_INVALID: 1}
    ip = reply[14:]
    assert ip[9] == 1 and ip[20:22] == b"\x03\x04"  # ICMP unreachable, fragmentation needed
    assert int.from_bytes(ip[26:28], "big") == 1500
    t = build_node()
    frame = tcp_super(VM1, VM2.ip, BIG, df=False)
    assert process_super(t, frame, VM1.vif, 1461, 0.0) == []
    # a segment size beyond the MTU on a frame that would fit: dropped, nothing to say
    assert process_super(t, tcp_super(VM1, VM2.ip, bytes(100)), VM1.vif, 9000, 0.0) == []
    assert drops(t) == {Drop.GSO_SIZE_INVALID: 2}


def test_a_sane_vm_super_frame_still_leaves_whole() -> None:
    t = build_node()
    [(vif, _, mss)] = process_super(t, tcp_super(VM1, VM2.ip, BIG), VM1.vif, 1460, 0.0)
    assert (vif, mss) == (VM2.vif, 1460)
    assert t.vifs[VM2.vif].stats.tx_packets == -(-len(BIG) // 1460)


def test_fabric_super_frames_are_bounded_by_segment_count() -> None:
    t = build_node()
    inner = tcp_super(VM4, VM1.ip, bytes(MAX_SEGMENTS + 1))[14:]
    tagged = build_ethernet(N1.mac, N2.mac, ETH_P_IP, inner, vlan=100)
    assert process_super(t, tagged, FABRIC_VIF, 1, 0.0) == []
    assert drops(t) == {Drop.GSO_TOO_MANY_SEGMENTS: 1}
    inner = tcp_super(VM4, VM1.ip, bytes(MAX_SEGMENTS))[14:]
    tagged = build_ethernet(N1.mac, N2.mac, ETH_P_IP, inner, vlan=100)
    assert len(process_super(t, tagged, FABRIC_VIF, 1, 0.0)) == 1  # what GRO may make


def test_no_segmentation_anywhere_makes_more_than_the_cap() -> None:
    frame = tcp_super(VM1, VM2.ip, bytes(SEGMENT_CAP + 1))
    with pytest.raises(Malformed) as err:
        segment(frame, 1)
    assert err.value.reason == Drop.GSO_TOO_MANY_SEGMENTS
    assert len(segment(tcp_super(VM1, VM2.ip, bytes(SEGMENT_CAP)), 1)) == SEGMENT_CAP
    with pytest.raises(Malformed):
        segment_tcp4(tcp_super(VM1, VM2.ip, BIG), MIN_MSS - 1)


def test_the_flow_table_is_sized_for_the_node() -> None:
    gib = 1 << 30
    assert flow_capacity_for(None) == DEFAULT_FLOW_CAPACITY
    assert flow_capacity_for(gib // 4) == MIN_FLOW_CAPACITY  # a small node keeps a floor
    assert flow_capacity_for(4 * gib) == 131072  # a 64th of 4 GiB at 512 bytes a flow
    assert flow_capacity_for(24 * gib) == 786432
    assert flow_capacity_for(1024 * gib) == MAX_FLOW_CAPACITY


# -- the command line -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--vrf-flow-quota", "0", "VRF flow quota"),
        ("--flow-capacity", "0", "flow capacity"),
        ("--vif-hold-limit", "0", "hold limit"),
        ("--vif-punt-rate", "0", "punt rate"),
        ("--vif-punt-burst", "0", "punt burst"),
    ],
)
def test_the_vrouter_command_refuses_bad_limits_before_starting(
    option: str, value: str, words: str
) -> None:
    from typer.testing import CliRunner

    from openvpc.cli import app

    argv = ["vrouter", "--control", "/nonexistent/vr.sock", "--fabric", "nothing"]
    argv += ["--secret-file", "/nonexistent/node.secret", option, value]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2
    assert words in " ".join(result.output.split())


def test_the_stats_request_reports_drops_flows_and_vifs() -> None:
    from openvpc.vrouter.handler import ControlHandler
    from openvpc.vrouter.program import Programmer

    t = build_node(policy=True, limits=NodeLimits(vif_hold_limit=1))
    flood(t, VM1, VM2, 3)
    reply, emits = ControlHandler(Programmer(t), "boot").handle({"id": 7, "op": "stats"}, 0.0)
    assert reply["ok"] and reply["id"] == 7 and emits == []
    result = reply["result"]
    assert result["drops"] == {"flow_hold_limit": 2}
    assert result["flows"]["entries"] == 1 and result["flows"]["holds"] == {"3/1": 1}
    assert result["flows"]["vrf_quota"] == NodeLimits().flow_capacity // VRF_SHARE
    vm1 = result["vifs"][str(VM1.vif)]
    assert (vm1["name"], vm1["rx_packets"], vm1["drops"]) == ("tap-vm1", 3, 2)
    assert result["vifs"][str(AGENT_VIF)]["tx_packets"] == 1
