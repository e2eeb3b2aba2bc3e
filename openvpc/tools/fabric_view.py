"""Names what an underlay frame carries (encapsulation and label/VNI/VLAN), for people."""

from openvpc.packet.errors import Malformed
from openvpc.packet.ethernet import ETH_P_ARP, ETH_P_IP, ETH_P_MPLS, parse_ethernet
from openvpc.packet.ipv4 import PROTO_GRE, PROTO_UDP, parse_ipv4
from openvpc.packet.l4 import parse_udp
from openvpc.packet.tunnel import (
    UDP_PORT_MPLS,
    UDP_PORT_VXLAN,
    parse_gre,
    parse_mpls,
    parse_vxlan,
)


def describe(frame: bytes) -> str:
    """E.g. 'mplsogre label 200', 'vxlan vni 5001', 'vlan 101', 'arp'; 'other' if none fits."""
    try:
        eth = parse_ethernet(frame)
        if eth.vlan is not None:
            return f"vlan {eth.vlan}"
        if eth.ethertype == ETH_P_ARP:
            return "arp"
        if eth.ethertype != ETH_P_IP:
            return "other"
        ip = parse_ipv4(frame, eth.offset)
        p = eth.offset + ip.header_len
        if ip.proto == PROTO_GRE:
            gre = parse_gre(frame, p)
            if gre.protocol == ETH_P_MPLS:
                return f"mplsogre label {parse_mpls(frame, p + gre.header_len).label}"
        if ip.proto == PROTO_UDP:
            udp = parse_udp(frame, p)
            if udp.dport == UDP_PORT_VXLAN:
                return f"vxlan vni {parse_vxlan(frame, p + 8)}"
            if udp.dport == UDP_PORT_MPLS:
                return f"mplsoudp label {parse_mpls(frame, p + 8).label}"
    except Malformed:
        return "malformed"
    return "other"
