"""A hand-programmed vRouter for the pipeline tests: two compute nodes, one l3 VPC.

Node 1 hosts vm1 (10.0.1.3) and vm2 (10.0.1.4); node 2 hosts vm3 (10.0.2.9, another subnet)
and vm4 (10.0.1.9, vm1's subnet). Each node has a fabric vif (0), an agent vif (1), the
VPC's VRF (1) with /32 routes carrying stitched MACs, gateway ReceiveNH /32s, and a TunnelNH
to the other node reached over a directly attached underlay with a known (or unknown)
neighbour. Frame builders for every kind of traffic live here too.
"""

from dataclasses import dataclass

from openvpc.model.forwarding import VROUTER_MAC, ArpMode, Encap
from openvpc.packet import dhcp
from openvpc.packet.arp import ARP_REPLY, ARP_REQUEST, build_arp
from openvpc.packet.ethernet import (
    BROADCAST,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_MPLS,
    ZERO_MAC,
    build_ethernet,
)
from openvpc.packet.ipv4 import PROTO_GRE, PROTO_ICMP, PROTO_TCP, PROTO_UDP, build_ipv4
from openvpc.packet.l4 import ICMP_ECHO_REQUEST, build_icmp, build_tcp, build_udp
from openvpc.packet.tunnel import (
    UDP_PORT_MPLS,
    UDP_PORT_VXLAN,
    build_gre,
    build_mpls,
    build_vxlan,
)
from openvpc.vrouter.limits import DEFAULT_LIMITS, NodeLimits
from openvpc.vrouter.nexthop import EncapNH, ReceiveNH, TunnelNH
from openvpc.vrouter.tables import Fabric, LabelEntry, Route, Tables, Vif, VifKind, Vrf

FABRIC_VIF = 0
AGENT_VIF = 1
VRF = 1
VNI = 100
VLAN = 100
GW1 = bytes([10, 0, 1, 1])
GW2 = bytes([10, 0, 2, 1])
RECEIVE_NH = 2
ENCAP_SPORT = 49152


@dataclass(frozen=True)
class Node:
    index: int
    ip: bytes
    mac: bytes
    label: int  # the MPLS label this node allocated for the VPC's VRF

    @property
    def tunnel_nh(self) -> int:
        """The id other nodes give their TunnelNH to this node."""
        return 20 + self.index


@dataclass(frozen=True)
class Vm:
    name: str
    node: int
    vif: int
    mac: bytes
    ip: bytes
    gateway: bytes

    @property
    def encap_nh(self) -> int:
        return 10 + self.vif


NODES = {
    1: Node(1, bytes([10, 1, 0, 1]), bytes.fromhex("02000a010001"), 17),
    2: Node(2, bytes([10, 1, 0, 2]), bytes.fromhex("02000a010002"), 18),
}
VM1 = Vm("vm1", 1, 3, bytes.fromhex("020000010003"), bytes([10, 0, 1, 3]), GW1)
VM2 = Vm("vm2", 1, 4, bytes.fromhex("020000010004"), bytes([10, 0, 1, 4]), GW1)
VM3 = Vm("vm3", 2, 3, bytes.fromhex("020000020009"), bytes([10, 0, 2, 9]), GW2)
VM4 = Vm("vm4", 2, 4, bytes.fromhex("020000010009"), bytes([10, 0, 1, 9]), GW1)
VMS = (VM1, VM2, VM3, VM4)


def tunnel_label(encap: Encap, node: Node) -> int:
    """What a sender imposes toward `node`: the VNI, the VLAN id, or the node's own label."""
    if encap is Encap.VXLAN:
        return VNI
    if encap is Encap.VLAN:
        return VLAN
    return node.label


def build_node(
    index: int = 1,
    encap: Encap = Encap.VXLAN,
    *,
    policy: bool = False,
    neighbor: bool = True,
    decrement_ttl: bool = False,
    arp_mode: ArpMode = ArpMode.PROXY,
    fabric_mtu: int = 1500,
    limits: NodeLimits = DEFAULT_LIMITS,
) -> Tables:
    """Program node `index`'s tables as its agent would; `policy` puts its VMs under flows."""
    me = NODES[index]
    t = Tables(Fabric(FABRIC_VIF, me.ip, me.mac, fabric_mtu), limits)
    t.add_vif(Vif(AGENT_VIF, VifKind.AGENT, "pkt0"))
    t.add_vrf(Vrf(VRF, "vpc-a", decrement_ttl=decrement_ttl, arp_mode=arp_mode))
    t.add_nexthop(RECEIVE_NH, ReceiveNH())
    for gw in (GW1, GW2):
        t.add_route(VRF, gw, 32, Route(RECEIVE_NH))
    for node in NODES.values():
        if node is not me:
            t.add_nexthop(node.tunnel_nh, TunnelNH(encap, node.ip))
    for vm in VMS:
        if vm.node == index:
            t.add_vif(
                Vif(
                    vm.vif,
                    VifKind.VIRTUAL,
                    f"tap-{vm.name}",
                    vrf=VRF,
                    mac=vm.mac,
                    ip=vm.ip,
                    prefix_len=24,
                    gateway_ip=vm.gateway,
                    policy=policy,
                )
            )
            t.add_nexthop(vm.encap_nh, EncapNH(vm.vif, vm.mac, VROUTER_MAC))
            route = Route(vm.encap_nh, mac=vm.mac)
        else:
            node = NODES[vm.node]
            route = Route(node.tunnel_nh, tunnel_label(encap, node), vm.mac)
        t.add_route(VRF, vm.ip, 32, route)
        t.add_mac_route(VRF, vm.mac, route)
    t.add_label(me.label, LabelEntry(VRF))
    t.add_vni(VNI, VRF)
    t.add_vlan(VLAN, VRF)
    t.add_underlay_route(bytes([10, 1, 0, 0]), 24, None)
    if neighbor:
        for node in NODES.values():
            if node is not me:
                t.add_neighbor(node.ip, node.mac)
    return t


# -- frames from a VM ------------------------------------------------------------------
def eth_ip(vm: Vm, packet: bytes, dst_mac: bytes = VROUTER_MAC) -> bytes:
    return build_ethernet(dst_mac, vm.mac, ETH_P_IP, packet)


def icmp_echo(
    src: Vm,
    dst: bytes,
    ident: int = 0x1234,
    seq: int = 1,
    payload: bytes = b"ping" * 8,
    ttl: int = 64,
    df: bool = False,
) -> bytes:
    body = build_icmp(ICMP_ECHO_REQUEST, 0, ident.to_bytes(2, "big") + seq.to_bytes(2, "big"))
    packet = build_ipv4(src.ip, dst, PROTO_ICMP, body + payload, ttl=ttl, df=df)
    return eth_ip(src, packet)


def udp_frame(
    src: Vm,
    dst: bytes,
    sport: int = 40000,
    dport: int = 5001,
    payload: bytes = b"hello",
    ttl: int = 64,
    df: bool = False,
    src_ip: bytes | None = None,
    dst_mac: bytes = VROUTER_MAC,
) -> bytes:
    sip = src.ip if src_ip is None else src_ip
    packet = build_ipv4(
        sip, dst, PROTO_UDP, build_udp(sip, dst, sport, dport, payload), ttl=ttl, df=df
    )
    return eth_ip(src, packet, dst_mac)


def tcp_frame(
    src: Vm, dst: bytes, sport: int, dport: int, flags: int, payload: bytes = b""
) -> bytes:
    segment = build_tcp(src.ip, dst, sport, dport, flags, seq=1000, payload=payload)
    return eth_ip(src, build_ipv4(src.ip, dst, PROTO_TCP, segment, df=True))


def arp_request_from(vm: Vm, target: bytes, sender_ip: bytes | None = None) -> bytes:
    spa = vm.ip if sender_ip is None else sender_ip
    body = build_arp(ARP_REQUEST, vm.mac, spa, ZERO_MAC, target)
    return build_ethernet(BROADCAST, vm.mac, ETH_P_ARP, body)


def dhcp_discover(vm: Vm) -> bytes:
    message = dhcp.build_dhcp(
        dhcp.BOOTREQUEST, 0x3903F326, vm.mac, options=[(dhcp.MSG_TYPE, bytes([dhcp.DISCOVER]))]
    )
    zero, bcast = b"\x00" * 4, b"\xff" * 4
    udp = build_udp(zero, bcast, dhcp.CLIENT_PORT, dhcp.SERVER_PORT, message)
    return build_ethernet(BROADCAST, vm.mac, ETH_P_IP, build_ipv4(zero, bcast, PROTO_UDP, udp))


# -- frames from the fabric: node `src` to node `dst` ---------------------------------------
def _outer_ip(src: Node, dst: Node, proto: int, payload: bytes) -> bytes:
    return build_ethernet(dst.mac, src.mac, ETH_P_IP, build_ipv4(src.ip, dst.ip, proto, payload))


def vxlan_frame(src: Node, dst: Node, vni: int, inner: bytes, sport: int = ENCAP_SPORT) -> bytes:
    udp = build_udp(src.ip, dst.ip, sport, UDP_PORT_VXLAN, build_vxlan(vni) + inner, False)
    return _outer_ip(src, dst, PROTO_UDP, udp)


def mplsoudp_frame(
    src: Node, dst: Node, label: int, inner: bytes, sport: int = ENCAP_SPORT
) -> bytes:
    udp = build_udp(src.ip, dst.ip, sport, UDP_PORT_MPLS, build_mpls(label) + inner, False)
    return _outer_ip(src, dst, PROTO_UDP, udp)


def mplsogre_frame(src: Node, dst: Node, label: int, inner: bytes) -> bytes:
    return _outer_ip(src, dst, PROTO_GRE, build_gre(ETH_P_MPLS) + build_mpls(label) + inner)


def vlan_frame(src: Node, dst: Node, vlan: int, inner_ip: bytes) -> bytes:
    return build_ethernet(dst.mac, src.mac, ETH_P_IP, inner_ip, vlan=vlan)


def underlay_arp(op: int, src: Node, target_ip: bytes, dst_mac: bytes = BROADCAST) -> bytes:
    body = build_arp(op, src.mac, src.ip, ZERO_MAC if op == ARP_REQUEST else dst_mac, target_ip)
    return build_ethernet(dst_mac, src.mac, ETH_P_ARP, body)


def underlay_arp_reply(src: Node, to: Node) -> bytes:
    return underlay_arp(ARP_REPLY, src, to.ip, to.mac)
