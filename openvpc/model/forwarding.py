"""The forwarding vocabulary shared by the compiler, the agent and the vRouter: encapsulations,
VRF modes, the well-known MACs, addresses and vif ids, the encapsulation overhead, the flow key."""

import ipaddress
from enum import StrEnum

from openvpc.packet.ethernet import ETH_LEN
from openvpc.packet.ipv4 import IPV4_LEN
from openvpc.packet.l4 import UDP_LEN
from openvpc.packet.tunnel import GRE_LEN, MPLS_LEN, VXLAN_LEN


class Encap(StrEnum):
    VXLAN = "vxlan"
    MPLSOUDP = "mplsoudp"
    MPLSOGRE = "mplsogre"
    VLAN = "vlan"


class Mode(StrEnum):
    L3 = "l3"
    L2 = "l2"
    L2_L3 = "l2_l3"


class ArpMode(StrEnum):
    PROXY = "proxy"  # the target VM's MAC in the same subnet, the gateway MAC otherwise
    SINGLE_MAC = "single_mac"  # legacy Amazon: one MAC for every answer


# Contrail's vRouter MAC: the gateway MAC every vRouter answers with
VROUTER_MAC = bytes.fromhex("00005e000100")
# Contrail's 169.254.x.x default gateway, for VPCs that use it
LINK_LOCAL_GATEWAY = ipaddress.IPv4Address("169.254.0.1").packed

# reserved vif ids: the underlay port, the agent's punt channel (pkt0), then the VMs
FABRIC_VIF = 0
AGENT_VIF = 1
FIRST_VM_VIF = 2

_OUTER_LEN = {
    Encap.VXLAN: IPV4_LEN + UDP_LEN + VXLAN_LEN,
    Encap.MPLSOUDP: IPV4_LEN + UDP_LEN + MPLS_LEN,
    Encap.MPLSOGRE: IPV4_LEN + GRE_LEN + MPLS_LEN,
    Encap.VLAN: 0,
}


def overhead(encap: Encap, l2_payload: bool) -> int:
    """Bytes the encapsulation adds in front of the tenant IP packet, within the underlay MTU."""
    if encap is Encap.VLAN:
        return 0
    inner_eth = ETH_LEN if l2_payload or encap is Encap.VXLAN else 0
    return _OUTER_LEN[encap] + inner_eth


# (vrf, protocol, source ip, destination ip, source port, destination port)
FlowKey = tuple[int, int, bytes, bytes, int, int]
# A NAT rewrite: (source ip, destination ip, source port, destination port) after translation
NatTuple = tuple[bytes, bytes, int, int]
