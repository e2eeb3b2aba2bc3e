"""The forwarding pipeline, driven by frames into a hand-programmed vRouter (see vrouter_setup).

Outputs are read back with scapy as an independent oracle wherever a wire format matters.
"""

from collections import Counter

import pytest
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, GRE, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet
from vrouter_setup import (
    AGENT_VIF,
    FABRIC_VIF,
    GW1,
    GW2,
    NODES,
    VLAN,
    VM1,
    VM2,
    VM3,
    VM4,
    VNI,
    VRF,
    Vm,
    arp_request_from,
    build_node,
    dhcp_discover,
    eth_ip,
    icmp_echo,
    mplsogre_frame,
    mplsoudp_frame,
    tcp_frame,
    udp_frame,
    underlay_arp,
    underlay_arp_reply,
    vxlan_frame,
)

from openvpc.model.forwarding import VROUTER_MAC, ArpMode, Encap, FlowKey, overhead
from openvpc.packet.arp import ARP_REQUEST
from openvpc.packet.ethernet import BROADCAST, ETH_LEN, ETH_P_IPV6, build_ethernet, mac_to_str
from openvpc.packet.ipv4 import PROTO_UDP, build_ipv4, ip_to_bytes, ip_to_str
from openvpc.packet.l4 import TCP_ACK, TCP_SYN, build_udp
from openvpc.vrouter import pipeline
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.flow import FlowAction
from openvpc.vrouter.limits import NodeLimits
from openvpc.vrouter.punt import Punt, build_punt, parse_punt
from openvpc.vrouter.tables import Tables
from openvpc.vrouter.trace import Trace

N1, N2 = NODES[1], NODES[2]
TUNNELS = [Encap.VXLAN, Encap.MPLSOUDP, Encap.MPLSOGRE]


def send(t: Tables, frame: bytes, vif: int = VM1.vif, now: float = 0.0) -> list[pipeline.Emit]:
    return pipeline.process(t, frame, vif, now)


def ip_of(frame: bytes) -> bytes:
    """The IPv4 packet of an untagged Ethernet frame."""
    return frame[ETH_LEN:]


def drops(t: Tables) -> Counter[str]:
    return Counter({k: v for k, v in t.drops.items() if v})


def checksums_ok(raw: bytes) -> bool:
    """Whether every IPv4/UDP/TCP/ICMP checksum in the frame is what scapy computes."""
    p = Ether(raw)
    layer: Packet = p
    while layer:
        if type(layer) in (IP, TCP, ICMP) or (type(layer) is UDP and layer.chksum != 0):
            del layer.chksum
        layer = layer.payload
    return bytes(Ether(bytes(p))) == raw


def tunnel_inner_ip(raw: bytes, encap: Encap) -> Packet:
    """The tenant IP packet inside an outer frame emitted toward the fabric."""
    tunnel = {Encap.VXLAN: VXLAN, Encap.VLAN: Dot1Q}.get(encap, MPLS)
    ip: Packet = Ether(raw)[tunnel][IP]
    return ip


# -- local delivery ---------------------------------------------------------------------
def test_vm_to_vm_on_one_node_rewrites_macs_and_keeps_ttl() -> None:
    t = build_node()
    frame = udp_frame(VM1, VM2.ip, ttl=7)
    out = send(t, frame)
    assert len(out) == 1
    vif, data = out[0]
    assert vif == VM2.vif
    assert data[:12] == VM2.mac + VROUTER_MAC
    assert ip_of(data) == ip_of(frame)  # TTL 7 untouched, nothing else changed
    assert Ether(data)[IP].ttl == 7
    assert t.vifs[VM2.vif].stats.tx_packets == 1
    assert t.vifs[VM1.vif].stats.rx_packets == 1
    assert not drops(t)


def test_decrement_ttl_variant() -> None:
    t = build_node(decrement_ttl=True)
    [(vif, data)] = send(t, udp_frame(VM1, VM2.ip, ttl=64))
    assert vif == VM2.vif and Ether(data)[IP].ttl == 63
    assert checksums_ok(data)
    assert send(t, udp_frame(VM1, VM2.ip, ttl=1)) == []
    assert drops(t) == {Drop.TTL_EXPIRED: 1}


def test_no_route() -> None:
    t = build_node()
    assert send(t, udp_frame(VM1, ip_to_bytes("10.0.9.9"))) == []
    assert drops(t) == {Drop.NO_ROUTE: 1}
    assert t.vifs[VM1.vif].stats.drops == 1


def test_unknown_vif() -> None:
    t = build_node()
    assert pipeline.process(t, udp_frame(VM1, VM2.ip), 99, 0.0) == []
    assert drops(t) == {Drop.INVALID_VIF: 1}


def test_same_vif_hairpin_is_dropped() -> None:
    t = build_node()
    assert send(t, udp_frame(VM1, VM1.ip)) == []
    assert drops(t) == {Drop.SAME_VIF: 1}


# -- ARP proxy --------------------------------------------------------------------------
def arp_answer(out: list[pipeline.Emit], asker: Vm) -> Packet:
    assert len(out) == 1
    vif, data = out[0]
    assert vif == asker.vif
    p = Ether(data)
    assert p.dst == mac_to_str(asker.mac)
    assert p[ARP].op == 2 and p[ARP].pdst == ip_to_str(asker.ip)
    assert p[ARP].hwdst == mac_to_str(asker.mac)
    assert p.src == p[ARP].hwsrc
    arp: Packet = p[ARP]
    return arp


def test_arp_for_a_vm_in_the_same_subnet_gets_its_mac() -> None:
    t = build_node()
    for target in (VM2, VM4):  # local, and on the other node
        arp = arp_answer(send(t, arp_request_from(VM1, target.ip)), VM1)
        assert (arp.psrc, arp.hwsrc) == (ip_to_str(target.ip), mac_to_str(target.mac))


@pytest.mark.parametrize("target", [GW1, VM3.ip], ids=["gateway", "other-subnet"])
def test_arp_for_the_gateway_or_another_subnet_gets_the_gateway_mac(target: bytes) -> None:
    t = build_node()
    arp = arp_answer(send(t, arp_request_from(VM1, target)), VM1)
    assert (arp.psrc, arp.hwsrc) == (ip_to_str(target), mac_to_str(VROUTER_MAC))


def test_arp_for_an_unknown_address_is_punted_with_the_agent_header() -> None:
    t = build_node()
    frame = arp_request_from(VM1, ip_to_bytes("10.0.1.77"))
    [(vif, data)] = send(t, frame)
    assert vif == AGENT_VIF
    header, inner = parse_punt(data)
    assert (header.reason, header.vif, header.vrf) == (Punt.ARP, VM1.vif, VRF)
    assert inner == frame


def test_gratuitous_arp_is_punted() -> None:
    t = build_node()
    [(vif, data)] = send(t, arp_request_from(VM1, VM1.ip))
    assert vif == AGENT_VIF and parse_punt(data)[0].reason == Punt.ARP


def test_arp_for_own_address_is_ignored() -> None:
    t = build_node()
    assert send(t, arp_request_from(VM1, VM1.ip, sender_ip=ip_to_bytes("10.0.1.200"))) == []
    assert drops(t) == {Drop.ARP_IGNORED: 1}


@pytest.mark.parametrize("target", ["10.0.1.4", "10.0.1.1", "10.0.2.9", "10.0.1.77"])
def test_single_mac_arp_mode_answers_one_mac(target: str) -> None:
    t = build_node(arp_mode=ArpMode.SINGLE_MAC)
    arp = arp_answer(send(t, arp_request_from(VM1, ip_to_bytes(target))), VM1)
    assert (arp.psrc, arp.hwsrc) == (target, mac_to_str(VROUTER_MAC))


# -- the gateway ------------------------------------------------------------------------
def test_gateway_answers_ping() -> None:
    t = build_node()
    [(vif, data)] = send(t, icmp_echo(VM1, GW1, ident=77, seq=5, payload=b"abcdefgh"))
    assert vif == VM1.vif
    p = Ether(data)
    assert (p.src, p.dst) == (mac_to_str(VROUTER_MAC), mac_to_str(VM1.mac))
    assert (p[IP].src, p[IP].dst) == (ip_to_str(GW1), ip_to_str(VM1.ip))
    assert (p[ICMP].type, p[ICMP].code, p[ICMP].id, p[ICMP].seq) == (0, 0, 77, 5)
    assert bytes(p[ICMP].payload) == b"abcdefgh"
    assert checksums_ok(data)


def test_another_subnets_gateway_does_not_answer() -> None:
    t = build_node()
    assert send(t, icmp_echo(VM1, GW2)) == []
    assert drops(t) == {Drop.GATEWAY_OTHER_SUBNET: 1}


def test_other_traffic_to_the_gateway_is_dropped() -> None:
    t = build_node()
    assert send(t, udp_frame(VM1, GW1, dport=9)) == []
    assert drops(t) == {Drop.RECEIVE_UNHANDLED: 1}


def test_dns_to_the_gateway_is_punted() -> None:
    t = build_node()
    [(vif, data)] = send(t, udp_frame(VM1, GW1, dport=53))
    assert vif == AGENT_VIF and parse_punt(data)[0].reason == Punt.DNS


# -- what an Amazon-style l3 VPC refuses ---------------------------------------------------
@pytest.mark.parametrize(
    ("dst", "dst_mac"),
    [
        ("255.255.255.255", BROADCAST),
        ("10.0.1.255", VROUTER_MAC),  # the subnet's directed broadcast
        ("224.0.0.5", bytes.fromhex("01005e000005")),
        ("10.0.1.4", bytes.fromhex("01005e000005")),  # unicast IP in a multicast frame
    ],
)
def test_broadcast_and_multicast_are_dropped(dst: str, dst_mac: bytes) -> None:
    t = build_node()
    assert send(t, udp_frame(VM1, ip_to_bytes(dst), dst_mac=dst_mac)) == []
    assert drops(t) == {Drop.L3_MULTICAST: 1}


def test_non_ip_is_dropped() -> None:
    t = build_node()
    assert send(t, build_ethernet(VROUTER_MAC, VM1.mac, ETH_P_IPV6, b"\x60" + bytes(47))) == []
    assert drops(t) == {Drop.L3_NON_IP: 1}


def test_vlan_tagged_frames_from_a_vm_are_dropped() -> None:
    t = build_node()
    frame = build_ethernet(VROUTER_MAC, VM1.mac, 0x0800, ip_of(udp_frame(VM1, VM2.ip)), vlan=5)
    assert send(t, frame) == []
    assert drops(t) == {Drop.VM_VLAN_TAGGED: 1}


def test_source_mac_spoofing_is_dropped() -> None:
    t = build_node()
    frame = udp_frame(VM1, VM2.ip)
    spoofed = frame[:6] + VM2.mac + frame[12:]
    assert send(t, spoofed) == []
    assert drops(t) == {Drop.SRC_MAC_MISMATCH: 1}


def test_source_ip_spoofing_is_dropped() -> None:
    t = build_node()
    assert send(t, udp_frame(VM1, VM2.ip, src_ip=VM4.ip)) == []
    assert drops(t) == {Drop.SRC_IP_MISMATCH: 1}


def test_allowed_address_passes_the_source_check() -> None:
    t = build_node()
    t.vifs[VM1.vif].allowed_ips = frozenset({ip_to_bytes("10.0.1.100")})
    [(vif, _)] = send(t, udp_frame(VM1, VM2.ip, src_ip=ip_to_bytes("10.0.1.100")))
    assert vif == VM2.vif


def test_dhcp_is_punted() -> None:
    t = build_node()
    frame = dhcp_discover(VM1)
    [(vif, data)] = send(t, frame)
    assert vif == AGENT_VIF
    header, inner = parse_punt(data)
    assert (header.reason, header.vif, header.vrf, inner) == (Punt.DHCP, VM1.vif, VRF, frame)


def test_no_agent_means_a_counted_drop() -> None:
    t = build_node()
    t.delete_vif(AGENT_VIF)
    assert send(t, dhcp_discover(VM1)) == []
    assert drops(t) == {Drop.AGENT_ABSENT: 1}


# -- flows ------------------------------------------------------------------------------
def flow_key(src: Vm, dst: Vm, sport: int, dport: int, proto: int = PROTO_UDP) -> FlowKey:
    return (VRF, proto, src.ip, dst.ip, sport, dport)


def test_flow_miss_holds_punts_queues_then_install_releases() -> None:
    t = build_node(policy=True)
    frames = [udp_frame(VM1, VM2.ip, payload=bytes([i]) * 10) for i in range(4)]
    [(vif, data)] = send(t, frames[0])
    assert vif == AGENT_VIF
    header, inner = parse_punt(data)
    assert (header.reason, header.vif, header.vrf, inner) == (
        Punt.FLOW_MISS,
        VM1.vif,
        VRF,
        frames[0],
    )
    key = flow_key(VM1, VM2, 40000, 5001)
    flow = t.flows.lookup(key)
    assert flow is not None and flow.action is FlowAction.HOLD
    assert send(t, frames[1]) == []
    assert send(t, frames[2]) == []
    assert drops(t) == {}
    assert send(t, frames[3]) == []  # the queue holds 3
    assert drops(t) == {Drop.FLOW_QUEUE_LIMIT: 1}

    reverse = flow_key(VM2, VM1, 5001, 40000)
    out = pipeline.install_flow(t, key, FlowAction.FORWARD, 1.0, reverse=reverse)
    assert [vif for vif, _ in out] == [VM2.vif] * 3
    assert [ip_of(d) for _, d in out] == [ip_of(f) for f in frames[:3]]  # in order
    installed = t.flows.lookup(key)
    assert installed is not None and installed.action is FlowAction.FORWARD
    assert installed.packets == 3

    # the reply finds the reverse flow: no punt
    [(vif, data)] = send(t, udp_frame(VM2, VM1.ip, sport=5001, dport=40000), vif=VM2.vif)
    assert vif == VM1.vif and data[:6] == VM1.mac
    back = t.flows.lookup(reverse)
    assert back is not None and back.packets == 1 and back.reverse == key


def test_released_packets_are_not_received_twice() -> None:
    t = build_node(policy=True)
    send(t, udp_frame(VM1, VM2.ip))
    pipeline.install_flow(t, flow_key(VM1, VM2, 40000, 5001), FlowAction.FORWARD, 0.0)
    assert t.vifs[VM1.vif].stats.rx_packets == 1
    assert t.vifs[VM2.vif].stats.tx_packets == 1


def test_flow_drop_action() -> None:
    t = build_node(policy=True)
    key = flow_key(VM1, VM2, 40000, 5001)
    pipeline.install_flow(t, key, FlowAction.DROP, 0.0, reverse=flow_key(VM2, VM1, 5001, 40000))
    assert send(t, udp_frame(VM1, VM2.ip)) == []
    assert send(t, udp_frame(VM2, VM1.ip, sport=5001, dport=40000), vif=VM2.vif) == []
    assert drops(t) == {Drop.FLOW_ACTION_DROP: 2}


def test_policy_on_the_destination_vif_needs_a_flow_too() -> None:
    t = build_node()
    t.vifs[VM2.vif].policy = True
    [(vif, data)] = send(t, udp_frame(VM1, VM2.ip))
    assert vif == AGENT_VIF and parse_punt(data)[0].reason == Punt.FLOW_MISS


def test_flow_table_full_and_quota() -> None:
    t = build_node(policy=True, limits=NodeLimits(flow_capacity=2, vrf_flow_quota=2))
    for sport in (1, 2):
        send(t, udp_frame(VM1, VM2.ip, sport=sport))
    assert send(t, udp_frame(VM1, VM2.ip, sport=3)) == []
    assert drops(t) == {Drop.FLOW_TABLE_FULL: 1}
    t = build_node(policy=True, limits=NodeLimits(vrf_flow_quota=1))
    send(t, udp_frame(VM1, VM2.ip, sport=1))
    assert send(t, udp_frame(VM1, VM2.ip, sport=2)) == []
    assert drops(t) == {Drop.FLOW_QUOTA: 1}


def test_tcp_flags_are_recorded() -> None:
    t = build_node(policy=True)
    key = flow_key(VM1, VM2, 33000, 80, proto=6)
    pipeline.install_flow(t, key, FlowAction.FORWARD, 0.0)
    send(t, tcp_frame(VM1, VM2.ip, 33000, 80, TCP_SYN))
    send(t, tcp_frame(VM1, VM2.ip, 33000, 80, TCP_ACK))
    flow = t.flows.lookup(key)
    assert flow is not None and flow.tcp_flags == TCP_SYN | TCP_ACK and flow.packets == 2


def test_nat_flow_rewrites_and_fixes_checksums() -> None:
    t = build_node(policy=True)
    key = flow_key(VM1, VM2, 40000, 5001)
    nat = (VM1.ip, VM2.ip, 41000, 5001)
    pipeline.install_flow(t, key, FlowAction.NAT, 0.0, nat=nat)
    [(vif, data)] = send(t, udp_frame(VM1, VM2.ip))
    assert vif == VM2.vif
    assert Ether(data)[UDP].sport == 41000
    assert checksums_ok(data)


# -- tunnels ----------------------------------------------------------------------------
@pytest.mark.parametrize("encap", [*TUNNELS, Encap.VLAN])
def test_tunnel_headers_as_scapy_reads_them(encap: Encap) -> None:
    t = build_node(encap=encap)
    frame = udp_frame(VM1, VM3.ip)
    [(vif, data)] = send(t, frame)
    assert vif == FABRIC_VIF
    p = Ether(data)
    assert (p.dst, p.src) == (mac_to_str(N2.mac), mac_to_str(N1.mac))
    assert checksums_ok(data)
    if encap is Encap.VLAN:
        assert p[Dot1Q].vlan == VLAN
        assert bytes(p[Dot1Q][IP]) == ip_of(frame)
        return
    outer = p[IP]
    assert (outer.src, outer.dst) == (ip_to_str(N1.ip), ip_to_str(N2.ip))
    if encap is Encap.VXLAN:
        assert p[UDP].dport == 4789 and 49152 <= p[UDP].sport <= 65535
        assert p[VXLAN].vni == VNI and p[VXLAN].flags == 0x08
        inner = p[VXLAN][Ether]
        assert (inner.dst, inner.src) == (mac_to_str(VM3.mac), mac_to_str(VROUTER_MAC))
        assert bytes(inner[IP]) == ip_of(frame)
        return
    if encap is Encap.MPLSOUDP:
        assert p[UDP].dport == 6635 and 49152 <= p[UDP].sport <= 65535
    else:
        assert outer.proto == 47 and p[GRE].proto == 0x8847
    assert p[MPLS].label == N2.label and p[MPLS].s == 1
    assert bytes(p[MPLS][IP]) == ip_of(frame)


@pytest.mark.parametrize("encap", [Encap.VXLAN, Encap.MPLSOUDP])
def test_outer_source_port_is_stable_per_flow(encap: Encap) -> None:
    t = build_node(encap=encap)

    def sport(frame: bytes) -> int:
        [(_, data)] = send(t, frame)
        port: int = Ether(data)[UDP].sport
        assert 49152 <= port <= 65535
        return port

    assert sport(udp_frame(VM1, VM3.ip, payload=b"a")) == sport(
        udp_frame(VM1, VM3.ip, payload=b"b")
    )
    ports = {sport(udp_frame(VM1, VM3.ip, sport=40000 + i)) for i in range(32)}
    assert len(ports) > 16  # flows spread


@pytest.mark.parametrize("encap", [*TUNNELS, Encap.VLAN])
def test_the_other_node_decapsulates_and_delivers(encap: Encap) -> None:
    a, b = build_node(1, encap), build_node(2, encap)
    frame = udp_frame(VM1, VM3.ip)
    [(_, outer)] = send(a, frame)
    [(vif, data)] = pipeline.process(b, outer, FABRIC_VIF, 0.0)
    assert vif == VM3.vif
    assert data[:12] == VM3.mac + VROUTER_MAC
    assert ip_of(data) == ip_of(frame)
    # and the reply goes back the same way
    reply = udp_frame(VM3, VM1.ip, sport=5001, dport=40000)
    [(_, outer)] = pipeline.process(b, reply, VM3.vif, 0.0)
    [(vif, data)] = pipeline.process(a, outer, FABRIC_VIF, 0.0)
    assert vif == VM1.vif and ip_of(data) == ip_of(reply)


def test_decap_with_unknown_vni_or_label() -> None:
    t = build_node()
    inner = udp_frame(VM3, VM1.ip)
    assert pipeline.process(t, vxlan_frame(N2, N1, VNI + 1, inner), FABRIC_VIF, 0.0) == []
    mpls = ip_of(inner)
    assert pipeline.process(t, mplsoudp_frame(N2, N1, 999, mpls), FABRIC_VIF, 0.0) == []
    assert pipeline.process(t, mplsogre_frame(N2, N1, 999, mpls), FABRIC_VIF, 0.0) == []
    assert drops(t) == {Drop.INVALID_VNI: 1, Drop.INVALID_LABEL: 2}


def test_fabric_does_not_transit() -> None:
    t = build_node()
    # node 2 sends us a packet for one of its own VMs: we never send it back to the fabric
    outer = vxlan_frame(N2, N1, VNI, udp_frame(VM4, VM3.ip))
    assert pipeline.process(t, outer, FABRIC_VIF, 0.0) == []
    assert drops(t) == {Drop.NO_TRANSIT: 1}


# -- MTU --------------------------------------------------------------------------------
def sized_udp(size: int, df: bool, dst: bytes = VM3.ip) -> bytes:
    payload = bytes(i % 251 for i in range(size - 28))
    packet = build_ipv4(VM1.ip, dst, PROTO_UDP, build_udp(VM1.ip, dst, 40000, 5001, payload), df=df)
    assert len(packet) == size
    return eth_ip(VM1, packet)


@pytest.mark.parametrize("encap", TUNNELS)
def test_df_packet_too_big_for_the_tunnel_gets_frag_needed(encap: Encap) -> None:
    t = build_node(encap=encap)
    mtu = 1500 - overhead(encap, False)
    assert mtu == {Encap.VXLAN: 1450, Encap.MPLSOUDP: 1468, Encap.MPLSOGRE: 1472}[encap]
    [(vif, data)] = send(t, sized_udp(mtu, df=True))  # exactly fits
    assert vif == FABRIC_VIF and len(data) == ETH_LEN + 1500

    frame = sized_udp(mtu + 1, df=True)
    [(vif, data)] = send(t, frame)
    assert vif == VM1.vif
    p = Ether(data)
    assert (p.src, p.dst) == (mac_to_str(VROUTER_MAC), mac_to_str(VM1.mac))
    assert (p[IP].src, p[IP].dst) == (ip_to_str(GW1), ip_to_str(VM1.ip))
    assert (p[ICMP].type, p[ICMP].code, p[ICMP].nexthopmtu) == (3, 4, mtu)
    quoted = bytes(p[ICMP].payload)
    assert quoted == ip_of(frame)[:28]  # the header and 64 bits of data
    assert checksums_ok(data)
    assert drops(t) == {Drop.FRAG_NEEDED: 1}


@pytest.mark.parametrize("encap", [*TUNNELS, Encap.VLAN])
def test_non_df_packet_is_fragmented_to_fit_the_fabric(encap: Encap) -> None:
    t = build_node(encap=encap)
    frame = sized_udp(4000, df=False)
    out = send(t, frame)
    assert len(out) >= 3 and all(vif == FABRIC_VIF for vif, _ in out)
    assert all(len(data) - ETH_LEN - (4 if encap is Encap.VLAN else 0) <= 1500 for _, data in out)
    pieces = [tunnel_inner_ip(data, encap) for _, data in out]
    assert len({p.id for p in pieces}) == 1
    assert [p.flags.MF for p in pieces] == [1] * (len(pieces) - 1) + [0]
    payload = b"".join(bytes(p.payload) for p in sorted(pieces, key=lambda p: int(p.frag)))
    assert payload == ip_of(frame)[20:]
    for p in pieces:  # every fragment's header checksum is right
        header = bytes(p)[:20]
        q = IP(header)
        del q.chksum
        assert bytes(IP(bytes(q)))[:20] == header


def test_df_packet_too_big_for_a_local_vm() -> None:
    t = build_node()
    t.vifs[VM2.vif].mtu = 1000
    [(vif, data)] = send(t, sized_udp(1001, df=True, dst=VM2.ip))
    assert vif == VM1.vif and Ether(data)[ICMP].nexthopmtu == 1000
    out = send(t, sized_udp(1500, df=False, dst=VM2.ip))
    assert len(out) == 2 and all(vif == VM2.vif and len(d) <= 1014 for vif, d in out)


# -- the underlay -----------------------------------------------------------------------
def test_unknown_underlay_neighbor_is_resolved_by_arp() -> None:
    t = build_node(neighbor=False)
    frames = [udp_frame(VM1, VM3.ip, payload=bytes([i])) for i in range(4)]
    [(vif, data)] = send(t, frames[0])
    assert vif == FABRIC_VIF
    p = Ether(data)
    assert p.dst == "ff:ff:ff:ff:ff:ff" and p[ARP].op == ARP_REQUEST
    assert (p[ARP].psrc, p[ARP].pdst) == (ip_to_str(N1.ip), ip_to_str(N2.ip))
    assert p[ARP].hwsrc == mac_to_str(N1.mac)
    assert send(t, frames[1]) == [] and send(t, frames[2]) == []
    assert drops(t) == {}
    assert send(t, frames[3]) == []  # three wait at most
    assert drops(t) == {Drop.NEIGHBOR_PENDING: 1}

    out = pipeline.process(t, underlay_arp_reply(N2, N1), FABRIC_VIF, 0.0)
    assert [vif for vif, _ in out] == [FABRIC_VIF] * 3
    for (_, data), frame in zip(out, frames, strict=False):
        assert data[:12] == N2.mac + N1.mac
        assert bytes(Ether(data)[VXLAN][IP]) == ip_of(frame)
    assert t.neighbors[N2.ip] == N2.mac and not t.pending
    [(vif, data)] = send(t, frames[0])
    assert vif == FABRIC_VIF and data[:6] == N2.mac


def test_underlay_arp_request_for_us_is_answered_and_learned() -> None:
    t = build_node(neighbor=False)
    [(vif, data)] = pipeline.process(t, underlay_arp(ARP_REQUEST, N2, N1.ip), FABRIC_VIF, 0.0)
    p = Ether(data)
    assert vif == FABRIC_VIF and p[ARP].op == 2
    assert (p[ARP].hwsrc, p[ARP].psrc, p[ARP].pdst) == (
        mac_to_str(N1.mac),
        ip_to_str(N1.ip),
        ip_to_str(N2.ip),
    )
    assert t.neighbors[N2.ip] == N2.mac


def test_underlay_arp_for_someone_else_is_ignored() -> None:
    t = build_node()
    frame = underlay_arp(ARP_REQUEST, N2, ip_to_bytes("10.1.0.99"))
    assert pipeline.process(t, frame, FABRIC_VIF, 0.0) == []
    assert drops(t) == {Drop.ARP_IGNORED: 1}


# -- agent injection and the recorder ---------------------------------------------------
def test_agent_injects_frames() -> None:
    t = build_node()
    frame = udp_frame(VM2, VM1.ip)
    header = build_punt(Punt.INJECT, VM1.vif, VRF, frame)
    assert pipeline.process(t, header, AGENT_VIF, 0.0) == [(VM1.vif, frame)]
    bad = build_punt(Punt.ARP, VM1.vif, VRF, frame)
    assert pipeline.process(t, bad, AGENT_VIF, 0.0) == []
    assert pipeline.process(t, b"\x00", AGENT_VIF, 0.0) == []
    assert drops(t) == {Drop.FROM_AGENT_INVALID: 1, "short_agent_header": 1}


def test_recorder_sees_every_stage() -> None:
    t = build_node()
    trace = Trace()
    out = pipeline.process(t, udp_frame(VM1, VM3.ip), VM1.vif, 0.0, recorder=trace)
    assert len(out) == 1
    assert trace.stages() == ["vif", "ip_fib", "nexthop", "encap", "global_fib", "tx"]
    text = trace.render()
    assert "10.0.2.9" in text and "vxlan" in text
    drop_trace = Trace()
    pipeline.process(t, udp_frame(VM1, ip_to_bytes("10.9.9.9")), VM1.vif, 0.0, drop_trace)
    assert drop_trace.steps[-1] == ("drop", Drop.NO_ROUTE)


def test_malformed_frames_are_counted_not_raised() -> None:
    t = build_node()
    frame = udp_frame(VM1, VM2.ip)
    assert send(t, frame[:20]) == []
    bad_checksum = frame[:24] + bytes([frame[24] ^ 0xFF]) + frame[25:]
    assert send(t, bad_checksum) == []
    assert drops(t) == {"short_ipv4": 1, "ipv4_bad_checksum": 1}


def test_tcp_to_a_remote_vm_over_each_tunnel() -> None:
    for encap in TUNNELS:
        a, b = build_node(1, encap), build_node(2, encap)
        frame = tcp_frame(VM1, VM3.ip, 33000, 22, TCP_SYN, payload=b"x" * 100)
        [(_, outer)] = send(a, frame)
        [(vif, data)] = pipeline.process(b, outer, FABRIC_VIF, 0.0)
        assert vif == VM3.vif and Ether(data)[TCP].dport == 22 and checksums_ok(data)
