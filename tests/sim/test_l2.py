"""Layer 2 overlays: unicast over the MAC FIB, no ARP in the overlay, fallback switching,
and the centralized or distributed gateway of an L2 network (seed: Layer 2 Unicast,
Fallback Switching)."""

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether
from simkit import (
    VROUTER_MAC_STR,
    assert_in_order,
    inner_ether,
    inner_frames,
    ip,
    mac_str,
    overlay_packets,
    steps_by_node,
    trace_by_node,
    tunnel_payload,
)

from openvpc.lab.endpoint import VmEndpoint
from openvpc.lab.sim import SimLab, Vpc
from openvpc.model.forwarding import Encap, Mode
from openvpc.packet.ethernet import ETH_P_IP, build_ethernet
from openvpc.packet.ipv4 import PROTO_UDP, build_ipv4
from openvpc.packet.l4 import build_udp
from openvpc.vrouter.drops import Drop

ENCAPS = [Encap.MPLSOGRE, Encap.MPLSOUDP, Encap.VXLAN, Encap.VLAN]
ETH_P_EXPERIMENTAL = 0x88B5  # IEEE 802 local experimental ethertype: certainly not IP


def l2_lab(
    mode: Mode, encap: Encap = Encap.MPLSOUDP, gateway_node: str | None = None
) -> tuple[SimLab, Vpc, VmEndpoint, VmEndpoint, VmEndpoint]:
    """a and b on node1 (different subnets), c on node2 (a's subnet)."""
    lab = SimLab(2)
    vpc = lab.add_vpc(
        "green",
        "l2net",
        ["10.1.1.0/24", "10.1.2.0/24"],
        mode=mode,
        encap=encap,
        gateway_node=gateway_node,
    )
    a = lab.add_vm(vpc, "a", "node1", "10.1.1.10")
    b = lab.add_vm(vpc, "b", "node1", "10.1.2.20")
    c = lab.add_vm(vpc, "c", "node2", "10.1.1.30")
    lab.build()
    return lab, vpc, a, b, c


def inner_arps(lab: SimLab) -> list[Ether]:
    frames = [inner_ether(inner) for _, _, inner in inner_frames(lab)]
    return [frame for frame in frames if ARP in frame]


@pytest.mark.parametrize("encap", ENCAPS)
def test_l2_unicast_across_nodes_over_mac_fib(
    encap: Encap, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab, vpc, a, _, c = l2_lab(Mode.L2, encap)
    node2 = lab.nodes["node2"]
    trace = trace_by_node(lab, monkeypatch)
    a.ping(c.ip)
    lab.run()

    # the tag of an L2 route: node2's L2 label (Ethernet inside), the VNI, or the VLAN
    tag = {
        Encap.VXLAN: vpc.vni,
        Encap.VLAN: vpc.vlan,
    }.get(encap, node2.labels[vpc.label][1])
    into = {
        Encap.VXLAN: ("vxlan", f"vni {tag} -> vrf"),
        Encap.VLAN: ("vlan", f"vlan {tag} -> vrf"),
    }.get(encap, ("mpls", f"label {tag} -> vrf"))
    route = lab.nodes["node1"].tables.vrfs[1].mac_fib[c.mac]
    vrf = f"{vpc.label}/main"  # the routing instance of the VPC's main route table
    steps = steps_by_node(trace)
    assert_in_order(
        steps,
        [
            ("node1", "arp_proxy", f"10.1.1.30 is-at {mac_str(c.mac)}"),
            ("node1", "mac_fib", f"{vrf}: {mac_str(c.mac)} -> nh {route.nh} label {tag}"),
            ("node1", "nexthop", "TunnelNH"),
            ("node1", "tx", "vif 0 "),
            ("node2", *into),
            ("node2", "mac_fib", f"{vrf}: {mac_str(c.mac)} -> nh"),
            ("node2", "nexthop", "EncapNH"),
            ("node2", "tx", f"vif {lab.ports['c'].vif} "),
        ],
    )
    # forwarding was by MAC: no IP FIB lookup anywhere, and the frame was not rewritten
    assert [s for s in steps if s[1] == "ip_fib"] == []
    assert len(c.got("echo_request", src=a.ip)) == 1
    assert len(a.got("echo_reply", src=c.ip)) == 1
    first = overlay_packets(lab, "node1")[0]
    kind, wire_tag, inner = tunnel_payload(first)
    assert (kind, wire_tag) == (str(encap), tag)
    frame = Ether(inner)  # Ethernet inside, whatever the encapsulation
    assert (frame.dst, frame.src) == (mac_str(c.mac), mac_str(a.mac))
    assert (frame[IP].src, frame[IP].dst) == ("10.1.1.10", "10.1.1.30")
    assert not lab.nodes["node1"].tables.drops and not node2.tables.drops


@pytest.mark.parametrize("encap", ENCAPS)
def test_l2_no_arp_crosses_the_overlay(encap: Encap) -> None:
    """ARP for a known VM is answered by the local proxy: never carried in a tunnel."""
    lab, _, a, _, c = l2_lab(Mode.L2, encap)
    a.ping(c.ip)
    lab.run()
    assert a.arp_cache[c.ip] == c.mac  # the first ARP exchange: the real MAC, locally
    for seq in range(2, 6):
        a.ping(c.ip, seq=seq)
        c.ping(a.ip, seq=seq)
    c.send_frame(c.arp_request(a.ip))  # an explicit re-ARP from the other side
    lab.run()
    assert len(a.got("echo_reply", src=c.ip)) == 5
    assert len(c.got("echo_reply", src=a.ip)) == 4
    assert c.arp_cache[a.ip] == a.mac
    assert overlay_packets(lab)  # traffic did cross...
    assert inner_arps(lab) == []  # ...but never an ARP
    # the underlay, however, does use ARP (seed: "but it is used in the underlay")
    if encap is not Encap.VLAN:
        assert any(ARP in p for p in [Ether(f) for _, f in lab.fabric_frames])


def test_l2_arp_for_an_unknown_address_is_flooded() -> None:
    """What the proxy cannot answer, the emulated switch floods (ingress replication)."""
    lab, vpc, a, b, c = l2_lab(Mode.L2)
    a.send_frame(a.arp_request(ip("10.1.1.99")))
    lab.run()
    [arp] = inner_arps(lab)
    assert arp[ARP].pdst == "10.1.1.99"
    [(_, label, _)] = list(inner_frames(lab))
    assert label == lab.nodes["node2"].labels[vpc.label][1]
    assert ARP in Ether(c.inbox[0]) and ARP in Ether(b.inbox[0])
    assert lab.nodes["node1"].punted == []


@pytest.mark.parametrize("encap", ENCAPS)
@pytest.mark.parametrize("nodes", [2, 3, 4])
def test_l2_broadcast_reaches_every_vm_exactly_once(encap: Encap, nodes: int) -> None:
    """Ingress replication (or, with VLAN, the underlay's own flooding): one copy per VM."""
    lab = SimLab(nodes)
    vpc = lab.add_vpc("green", "l2net", ["10.1.1.0/24"], mode=Mode.L2, encap=encap)
    vms = [
        lab.add_vm(vpc, f"vm{i}", f"node{i % nodes + 1}", f"10.1.1.{10 + i}")
        for i in range(2 * nodes)
    ]
    lab.build()
    frame = build_ethernet(b"\xff" * 6, vms[0].mac, ETH_P_EXPERIMENTAL, b"once, please")
    vms[0].send_frame(frame)
    lab.run()
    assert vms[0].inbox == []
    for vm in vms[1:]:
        assert vm.inbox == [frame], vm.name
    copies = len(overlay_packets(lab))
    assert copies == (1 if encap is Encap.VLAN else nodes - 1)


def non_ip_frame(src: VmEndpoint, dst_mac: bytes) -> bytes:
    return build_ethernet(dst_mac, src.mac, ETH_P_EXPERIMENTAL, b"fallback-switched" * 4)


def unrouted_ip_frame(src: VmEndpoint, dst_mac: bytes) -> bytes:
    """An IP packet to an address no IP FIB covers, sent to a known MAC."""
    dst = ip("10.77.0.9")
    udp = build_udp(src.ip, dst, 4000, 5000, b"no route for me")
    return build_ethernet(dst_mac, src.mac, ETH_P_IP, build_ipv4(src.ip, dst, PROTO_UDP, udp))


@pytest.mark.parametrize("encap", [Encap.MPLSOGRE, Encap.VXLAN, Encap.VLAN])
@pytest.mark.parametrize("remote", [True, False], ids=["across-nodes", "same-node"])
def test_fallback_switching_in_l2_l3(
    encap: Encap, remote: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab, _, a, b, c = l2_lab(Mode.L2_L3, encap)
    target = c if remote else b
    trace = trace_by_node(lab, monkeypatch)
    frames = [non_ip_frame(a, target.mac), unrouted_ip_frame(a, target.mac)]
    for frame in frames:
        a.send_frame(frame)
    lab.run()
    # both switched by MAC and delivered unchanged: no IP FIB route, MAC FIB fallback
    assert target.inbox == frames
    steps = steps_by_node(trace)
    assert [s for s in steps if s[1] == "ip_fib"] == []
    node = "node2" if remote else "node1"
    looked_up = [s for s in steps if s[:2] == ("node1", "mac_fib") and mac_str(target.mac) in s[2]]
    to_target = [
        s for s in steps if s[:2] == (node, "tx") and f"vif {lab.ports[target.name].vif} " in s[2]
    ]
    assert len(looked_up) == len(to_target) == 2
    assert not any(n.tables.drops for n in lab.nodes.values())


def test_l2_l3_routes_first_when_the_ip_fib_has_a_route(monkeypatch: pytest.MonkeyPatch) -> None:
    """IP FIB first: a packet to c's address reaches c even when sent to b's MAC."""
    lab, _, a, b, c = l2_lab(Mode.L2_L3, Encap.MPLSOUDP)
    trace = trace_by_node(lab, monkeypatch)
    udp = build_udp(a.ip, c.ip, 1234, 4321, b"routed")
    a.send_frame(build_ethernet(b.mac, a.mac, ETH_P_IP, build_ipv4(a.ip, c.ip, PROTO_UDP, udp)))
    lab.run()
    assert b.inbox == []
    [got] = c.got("udp")
    assert got.detail == (1234, 4321)
    steps = steps_by_node(trace)
    assert_in_order(
        steps,
        [
            ("node1", "fallback", "IP FIB hit: routed"),
            ("node1", "ip_fib", "10.1.1.30 -> nh"),
            ("node2", "tx", f"vif {lab.ports['c'].vif} "),
        ],
    )
    assert [s for s in steps if s[1] == "mac_fib"] == []
    # routed, so the inner Ethernet header was rewritten for c
    assert Ether(c.inbox[0]).dst == mac_str(c.mac)


@pytest.mark.parametrize("remote", [True, False], ids=["across-nodes", "same-node"])
def test_l3_mode_drops_what_l2_l3_would_switch(remote: bool) -> None:
    lab, _, a, b, c = l2_lab(Mode.L3, Encap.MPLSOGRE)
    target = c if remote else b
    a.send_frame(non_ip_frame(a, target.mac))
    a.send_frame(unrouted_ip_frame(a, target.mac))
    lab.run()
    assert target.inbox == []
    assert lab.fabric_frames == []
    drops = lab.nodes["node1"].tables.drops
    assert drops == {Drop.L3_NON_IP: 1, Drop.NO_ROUTE: 1}
    assert lab.nodes["node1"].tables.vifs[lab.ports["a"].vif].stats.drops == 2


# -- the gateway of an L2 network ----------------------------------------------------------
def test_centralized_gateway_hairpins_through_its_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inter-subnet traffic between two VMs on node1 is routed by node2, the gateway."""
    lab, vpc, a, b, _ = l2_lab(Mode.L2, Encap.MPLSOUDP, gateway_node="node2")
    node1, node2 = lab.nodes["node1"], lab.nodes["node2"]
    trace = trace_by_node(lab, monkeypatch)
    a.ping(b.ip)
    lab.run()
    assert len(b.got("echo_request", src=a.ip)) == 1
    assert len(a.got("echo_reply", src=b.ip)) == 1
    assert a.arp_cache[ip("10.1.1.1")] == bytes.fromhex("00005e000100")

    l2_label, l3_label = node2.labels[vpc.label][1], node1.labels[vpc.label][0]
    assert_in_order(
        steps_by_node(trace),
        [
            ("node1", "mac_fib", f"{VROUTER_MAC_STR} -> nh"),
            ("node1", "encap", f"label/vni {l2_label} to 192.168.0.11"),
            ("node2", "mpls", f"label {l2_label} -> vrf"),
            ("node2", "l2_receive", "gateway MAC: routed"),
            ("node2", "ip_fib", "10.1.2.20 -> nh"),
            ("node2", "encap", f"label/vni {l3_label} to 192.168.0.10"),
            ("node1", "mpls", f"label {l3_label} -> vrf"),
            ("node1", "ip_fib", "10.1.2.20 -> nh"),
            ("node1", "tx", f"vif {lab.ports['b'].vif} "),
        ],
    )
    # on the wire: there (Ethernet to the gateway MAC), and back (the routed IP packet)
    there = [tunnel_payload(p) for p in overlay_packets(lab, "node1")]
    back = [tunnel_payload(p) for p in overlay_packets(lab, "node2")]
    assert len(there) == len(back) == 2  # request and reply, each way
    for _, label, inner in there:
        frame = Ether(inner)
        assert (label, frame.dst) == (l2_label, VROUTER_MAC_STR)
    assert {(label, inner_ether(inner)[IP].dst) for _, label, inner in back} == {
        (l3_label, "10.1.2.20"),
        (l3_label, "10.1.1.10"),
    }
    assert all(p[IP].dst == "192.168.0.11" for p in overlay_packets(lab, "node1"))


def test_centralized_gateway_keeps_same_subnet_traffic_local() -> None:
    lab = SimLab(2)
    vpc = lab.add_vpc("green", "l2net", ["10.1.1.0/24"], mode=Mode.L2, gateway_node="node2")
    a = lab.add_vm(vpc, "a", "node1", "10.1.1.10")
    b = lab.add_vm(vpc, "b", "node1", "10.1.1.11")
    lab.build()
    a.ping(b.ip)
    lab.run()
    assert len(a.got("echo_reply", src=b.ip)) == 1
    assert lab.fabric_frames == []


@pytest.mark.parametrize("encap", ENCAPS)
def test_distributed_gateway_routes_locally(encap: Encap, monkeypatch: pytest.MonkeyPatch) -> None:
    lab, _, a, b, _ = l2_lab(Mode.L2, encap)
    trace = trace_by_node(lab, monkeypatch)
    a.ping(b.ip)
    b.udp(a.ip, 7000, 7001)
    lab.run()
    assert len(a.got("echo_reply", src=b.ip)) == 1
    assert len(a.got("udp", src=b.ip)) == 1
    assert lab.fabric_frames == []
    steps = steps_by_node(trace)
    assert {n for n, _, _ in steps} == {"node1"}
    assert_in_order(
        steps,
        [
            ("node1", "mac_fib", f"{VROUTER_MAC_STR} -> nh"),
            ("node1", "l2_receive", "gateway MAC: routed"),
            ("node1", "ip_fib", "10.1.2.20 -> nh"),
            ("node1", "tx", f"vif {lab.ports['b'].vif} "),
        ],
    )


@pytest.mark.parametrize("encap", [Encap.MPLSOGRE, Encap.VXLAN, Encap.VLAN])
def test_centralized_gateway_routes_between_nodes(encap: Encap) -> None:
    """A VM on node1 to another subnet's VM on node3, via the gateway on node2."""
    lab = SimLab(3)
    vpc = lab.add_vpc(
        "green",
        "l2net",
        ["10.1.1.0/24", "10.1.2.0/24"],
        mode=Mode.L2,
        encap=encap,
        gateway_node="node2",
    )
    a = lab.add_vm(vpc, "a", "node1", "10.1.1.10")
    d = lab.add_vm(vpc, "d", "node3", "10.1.2.40")
    lab.build()
    a.tcp_syn(d.ip, 40000, 80)
    d.listening.add(80)
    lab.run()
    assert [r.detail[:2] for r in d.got("tcp_syn")] == [(40000, 80)]
    assert [r.detail[:2] for r in a.got("tcp_synack")] == [(80, 40000)]
    senders = {n for n, f in lab.fabric_frames if UDP in Ether(f) or IP in Ether(f)}
    assert senders == {"node1", "node2", "node3"}
