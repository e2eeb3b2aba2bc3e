"""Pipeline entry and exit points for the socket-based fabric: `process_overlay` for tunnel
payloads without outer headers, and `Fabric.kernel_routed` for outer packets the kernel routes."""

import pytest
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, GRE, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from vrouter_setup import (
    AGENT_VIF,
    FABRIC_VIF,
    NODES,
    VLAN,
    VM1,
    VM3,
    VM4,
    VNI,
    build_node,
    icmp_echo,
    underlay_arp,
)

from openvpc.model.forwarding import VROUTER_MAC, Encap
from openvpc.packet.arp import ARP_REQUEST
from openvpc.packet.ethernet import ZERO_MAC
from openvpc.packet.tunnel import build_mpls, build_vxlan
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.flow import FlowAction
from openvpc.vrouter.pipeline import install_flow, process, process_overlay
from openvpc.vrouter.punt import Punt, parse_punt


def inner_ping() -> bytes:
    """vm4 (node 2) pinging vm1 (node 1): the IP packet node 2's vRouter puts in the tunnel."""
    return icmp_echo(VM4, VM1.ip)[14:]


@pytest.mark.parametrize("kind", ["vxlan", "mpls"])
def test_overlay_payload_reaches_the_vm(kind: str) -> None:
    encap = Encap.VXLAN if kind == "vxlan" else Encap.MPLSOGRE
    t = build_node(1, encap)
    packet = inner_ping()
    if kind == "vxlan":
        data = build_vxlan(VNI) + VM1.mac + VROUTER_MAC + b"\x08\x00" + packet
    else:
        data = build_mpls(NODES[1].label) + packet
    out = process_overlay(t, kind, data, 0.0)
    assert [vif for vif, _ in out] == [VM1.vif]
    delivered = Ether(out[0][1])
    assert delivered.dst == VM1.mac.hex(":") and bytes(delivered[IP]) == packet
    assert t.vifs[FABRIC_VIF].stats.rx_packets == 1
    assert t.vifs[VM1.vif].stats.tx_packets == 1


@pytest.mark.parametrize(
    ("kind", "data", "reason"),
    [
        ("vxlan", b"\x08\x00", "short_vxlan"),
        ("vxlan", b"\x00" * 8 + b"\x00" * 40, "vxlan_no_vni_flag"),
        ("vxlan", build_vxlan(999) + b"\x00" * 40, Drop.INVALID_VNI),
        ("mpls", build_mpls(12345) + b"\x45" + b"\x00" * 30, Drop.INVALID_LABEL),
        ("mpls", b"\x01", "short_mpls"),
    ],
)
def test_malformed_overlay_payloads_are_counted(kind: str, data: bytes, reason: str) -> None:
    t = build_node(1, Encap.VXLAN)
    assert process_overlay(t, kind, data, 0.0) == []
    assert t.drops == {reason: 1}
    assert t.vifs[FABRIC_VIF].stats.drops == 1


def test_unknown_overlay_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        process_overlay(build_node(1), "geneve", b"", 0.0)


def test_held_overlay_packet_is_released_whole_after_the_flow_install() -> None:
    t = build_node(1, Encap.MPLSOUDP, policy=True)
    packet = inner_ping()
    out = process_overlay(t, "mpls", build_mpls(NODES[1].label) + packet, 1.0)
    # the first packet goes to the agent as a flow miss; the payload waits in the flow table
    assert [vif for vif, _ in out] == [AGENT_VIF]
    header, punted = parse_punt(out[0][1])
    assert header.reason == Punt.FLOW_MISS and punted[14:] == packet
    flow = next(iter(t.flows.flows.values()))
    key = flow.key
    reverse = (key[0], key[1], key[3], key[2], key[5], key[4])
    released = install_flow(t, key, FlowAction.FORWARD, 2.0, reverse)
    assert [vif for vif, _ in released] == [VM1.vif]
    assert bytes(Ether(released[0][1])[IP]) == packet


@pytest.mark.parametrize("encap", [Encap.VXLAN, Encap.MPLSOUDP, Encap.MPLSOGRE])
def test_kernel_routed_fabric_emits_outer_ip_without_arp(encap: Encap) -> None:
    t = build_node(1, encap, neighbor=False)
    t.fabric.kernel_routed = True
    out = process(t, icmp_echo(VM1, VM3.ip), VM1.vif, 0.0)
    assert [vif for vif, _ in out] == [FABRIC_VIF]
    frame = out[0][1]
    assert frame[:6] == ZERO_MAC and frame[6:12] == NODES[1].mac
    outer = Ether(frame)[IP]
    assert outer.dst == "10.1.0.2" and outer.src == "10.1.0.1"
    if encap is Encap.VXLAN:
        assert outer[VXLAN].vni == VNI
    elif encap is Encap.MPLSOUDP:
        assert outer[UDP].dport == 6635
        assert MPLS(bytes(outer[UDP].payload)).label == NODES[2].label
    else:
        assert outer[GRE][MPLS].label == NODES[2].label
    assert not t.pending and sum(t.drops.values()) == 0


def test_kernel_routed_fabric_still_arps_for_vlan_frames() -> None:
    t = build_node(1, Encap.VLAN, neighbor=False)
    t.fabric.kernel_routed = True
    out = process(t, icmp_echo(VM1, VM3.ip), VM1.vif, 0.0)
    assert [vif for vif, _ in out] == [FABRIC_VIF]
    arp = Ether(out[0][1])
    assert arp.haslayer(ARP) and arp[ARP].pdst == "10.1.0.2"
    t.add_neighbor(NODES[2].ip, NODES[2].mac)
    out = process(t, icmp_echo(VM1, VM3.ip), VM1.vif, 0.0)
    tagged = Ether(out[0][1])
    assert tagged.dst == NODES[2].mac.hex(":") and tagged[Dot1Q].vlan == VLAN


def test_kernel_routed_fabric_leaves_arp_answers_to_the_kernel() -> None:
    t = build_node(1, Encap.VLAN, neighbor=False)
    t.fabric.kernel_routed = True
    request = underlay_arp(ARP_REQUEST, NODES[2], NODES[1].ip)
    assert process(t, request, FABRIC_VIF, 0.0) == []
    # it still learns the neighbour from the request
    assert t.neighbors[NODES[2].ip] == NODES[2].mac
    t.fabric.kernel_routed = False
    assert len(process(t, request, FABRIC_VIF, 0.0)) == 1
