"""The ingress stage: a frame from a VM. The vif's checks (tag, source MAC, source IP), the ARP
proxy, DHCP to the agent, then routing or switching by the VRF's mode."""

from __future__ import annotations

from typing import TYPE_CHECKING

from openvpc.model.forwarding import ArpMode, Mode
from openvpc.packet.arp import ARP_REQUEST, parse_arp
from openvpc.packet.ethernet import ETH_P_ARP, ETH_P_IP, Ethernet, is_multicast, parse_ethernet
from openvpc.packet.ipv4 import PROTO_UDP, ip_to_str, parse_ipv4
from openvpc.packet.l4 import l4_ports
from openvpc.vrouter import replies
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.lpm import prefix_int
from openvpc.vrouter.punt import Punt
from openvpc.vrouter.stages import bridge, route
from openvpc.vrouter.tables import Vrf
from openvpc.vrouter.trace import Stage

if TYPE_CHECKING:
    from openvpc.vrouter.pipeline import Pass

_ZERO_IP = b"\x00" * 4
_ALL_ONES = b"\xff" * 4


def from_vm(run: Pass, frame: bytes) -> None:
    vif = run.in_vif
    eth = parse_ethernet(frame)
    if run.rec is not None:
        run.rec(Stage.VIF, f"rx vif {vif.id} ({vif.name}) vrf {vif.vrf}")
    if eth.vlan is not None:
        return run.drop(Drop.VM_VLAN_TAGGED)
    if eth.src != vif.mac:
        return run.drop(Drop.SRC_MAC_MISMATCH)
    vrf = run.t.vrfs.get(vif.vrf)
    if vrf is None:
        return run.drop(Drop.INVALID_VRF)
    if eth.ethertype == ETH_P_ARP:
        return arp_from_vm(run, vrf, frame, eth)
    if eth.ethertype != ETH_P_IP:
        if vrf.mode is Mode.L3:
            return run.drop(Drop.L3_NON_IP)
        return bridge.bridge(run, vrf, frame, eth)
    ip = parse_ipv4(frame, eth.offset)
    packet = frame[eth.offset : eth.offset + ip.total_length]
    if ip.proto == PROTO_UDP and l4_ports(packet, ip)[1] == 67:
        return run.punt(Punt.DHCP, vrf.id, frame)
    if vif.source_check and ip.src != vif.ip and ip.src not in vif.allowed_ips:
        return run.drop(Drop.SRC_IP_MISMATCH)
    if vrf.mode is Mode.L3:
        if vrf.unicast_only and (is_multicast(eth.dst) or not_unicast(run, ip.dst)):
            return run.drop(Drop.L3_MULTICAST)
        return route.route(run, vrf, packet, ip)
    if vrf.mode is Mode.L2_L3 and vrf.ip_fib.lookup(ip.dst) is not None:
        if run.rec is not None:
            run.rec(Stage.FALLBACK, "IP FIB hit: routed")
        return route.route(run, vrf, packet, ip)
    return bridge.bridge(run, vrf, frame, eth)


def not_unicast(run: Pass, dst: bytes) -> bool:
    """Multicast, limited broadcast, or the directed broadcast of the sender's subnet."""
    if dst[0] >= 224 or dst == _ALL_ONES:
        return True
    vif = run.in_vif
    if vif.ip is None or vif.prefix_len >= 31:
        return False
    host_mask = (1 << (32 - vif.prefix_len)) - 1
    d = int.from_bytes(dst, "big")
    return d & host_mask == host_mask and prefix_int(dst, vif.prefix_len) == prefix_int(
        vif.ip, vif.prefix_len
    )


def arp_from_vm(run: Pass, vrf: Vrf, frame: bytes, eth: Ethernet) -> None:
    arp = parse_arp(frame, eth.offset)
    if arp.op != ARP_REQUEST:
        if vrf.mode is Mode.L3:
            return run.punt(Punt.ARP, vrf.id, frame)
        return bridge.bridge(run, vrf, frame, eth)
    if arp.spa == arp.tpa or arp.spa == _ZERO_IP:
        if run.rec is not None:
            run.rec(Stage.ARP, f"gratuitous/probe for {ip_to_str(arp.tpa)}")
        return run.punt(Punt.ARP, vrf.id, frame)
    answer = arp_answer(run, vrf, arp.tpa)
    if answer is not None:
        if run.rec is not None:
            run.rec(Stage.ARP_PROXY, f"{ip_to_str(arp.tpa)} is-at {answer.hex(':')}")
        return run.emit(run.in_vif.id, replies.arp_reply(arp, answer))
    if arp.tpa == run.in_vif.ip:
        return run.drop(Drop.ARP_IGNORED)
    if vrf.mode is Mode.L3:
        if run.rec is not None:
            run.rec(Stage.ARP, f"unknown {ip_to_str(arp.tpa)}")
        return run.punt(Punt.ARP, vrf.id, frame)
    return bridge.bridge(run, vrf, frame, eth)


def arp_answer(run: Pass, vrf: Vrf, target: bytes) -> bytes | None:
    vif = run.in_vif
    if target == vif.ip:
        return None
    if vrf.arp_mode is ArpMode.SINGLE_MAC:
        return vrf.gateway_mac
    if target == vif.gateway_ip or target == vrf.link_local_gateway:
        return vrf.gateway_mac
    found = vrf.ip_fib.lookup(target)
    if found is None:
        return None
    same_subnet = vif.ip is not None and prefix_int(target, vif.prefix_len) == prefix_int(
        vif.ip, vif.prefix_len
    )
    if same_subnet or vrf.mode is not Mode.L3:
        return found.mac
    return vrf.gateway_mac
