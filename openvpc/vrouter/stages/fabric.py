"""The fabric stage: to the underlay (outer headers from cached templates, 802.1Q tags, the
global FIB and the underlay's ARP) and from it (VXLAN, MPLS over UDP or GRE, 802.1Q: the VNI,
label or VLAN names the VRF, whose mode routes or switches the inner frame)."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from openvpc.model.forwarding import Mode
from openvpc.packet.arp import ARP_REQUEST, parse_arp
from openvpc.packet.errors import Malformed
from openvpc.packet.ethernet import (
    ETH_LEN,
    ETH_P_8021Q,
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_MPLS,
    ZERO_MAC,
    Ethernet,
    parse_ethernet,
)
from openvpc.packet.ipv4 import PROTO_GRE, PROTO_UDP, ip_to_str, parse_ipv4
from openvpc.packet.tunnel import (
    MPLS_LEN,
    UDP_PORT_MPLS,
    UDP_PORT_MPLS_LEGACY,
    UDP_PORT_VXLAN,
    VXLAN_LEN,
    parse_gre,
    parse_mpls,
    parse_vxlan,
)
from openvpc.vrouter import replies
from openvpc.vrouter.drops import Drop
from openvpc.vrouter.encap import OuterTemplate
from openvpc.vrouter.nexthop import TunnelNH
from openvpc.vrouter.stages import IP_TYPE, bridge, route
from openvpc.vrouter.tables import MAX_PENDING, Vrf
from openvpc.vrouter.trace import Stage

if TYPE_CHECKING:
    from openvpc.vrouter.pipeline import Pass

_PORTS = struct.Struct("!HH")


# -- to the fabric -------------------------------------------------------------------------
def tunnel(run: Pass, nh: TunnelNH, label: int, payload: bytes, sport: int) -> None:
    """Wrap in the outer header (cached per encap, destination and label) and send."""
    t = run.t
    key = (nh.encap, nh.dst_ip, label)
    template = t.templates.get(key)
    if template is None:
        template = OuterTemplate(nh.encap, t.fabric.ip, nh.dst_ip, label)
        t.templates[key] = template
    if run.rec is not None:
        run.rec(
            Stage.ENCAP, f"{nh.encap} label/vni {label} to {ip_to_str(nh.dst_ip)} sport {sport}"
        )
    run.to_node(nh.dst_ip, IP_TYPE + template.wrap(payload, sport))


def vlan_to_node(run: Pass, node_ip: bytes, vlan: int, rest: bytes) -> None:
    if run.rec is not None:
        run.rec(Stage.ENCAP, f"vlan {vlan} to {ip_to_str(node_ip)}")
    tag = ETH_P_8021Q.to_bytes(2, "big") + vlan.to_bytes(2, "big")
    run.to_node(node_ip, tag + rest)


def to_node(run: Pass, node_ip: bytes, rest: bytes) -> None:
    """Send `rest` (everything after the MAC addresses) toward `node_ip` on the underlay."""
    t = run.t
    if t.fabric.kernel_routed and rest[:2] == IP_TYPE:
        # the kernel routes the outer packet and resolves neighbours: no destination MAC
        if run.rec is not None:
            run.rec(Stage.GLOBAL_FIB, f"{ip_to_str(node_ip)} routed by the kernel")
        return run.emit(t.fabric.vif, ZERO_MAC + t.fabric.mac + rest)
    gateway = t.underlay.lookup(node_ip)
    if gateway is None:
        return run.drop(Drop.NO_UNDERLAY_ROUTE)
    hop = gateway or node_ip
    if run.rec is not None:
        run.rec(Stage.GLOBAL_FIB, f"{ip_to_str(node_ip)} via {ip_to_str(hop)}")
    mac = t.neighbors.get(hop)
    if mac is not None:
        return run.emit(t.fabric.vif, mac + t.fabric.mac + rest)
    queue = t.pending.setdefault(hop, [])
    if len(queue) >= MAX_PENDING:
        return run.drop(Drop.NEIGHBOR_PENDING)
    queue.append(rest)
    if len(queue) == 1:
        if run.rec is not None:
            run.rec(Stage.UNDERLAY_ARP, f"who-has {ip_to_str(hop)}")
        run.emit(t.fabric.vif, replies.arp_request(t.fabric.mac, t.fabric.ip, hop))
    return None


# -- from the fabric -----------------------------------------------------------------------
def from_fabric(run: Pass, frame: bytes) -> None:
    t = run.t
    eth = parse_ethernet(frame)
    if run.rec is not None:
        run.rec(Stage.VIF, f"rx fabric ({len(frame)} bytes)")
    if eth.vlan is not None:
        return vlan_in(run, frame, eth)
    if eth.ethertype == ETH_P_ARP:
        return underlay_arp(run, frame, eth)
    if eth.dst != t.fabric.mac:
        return run.drop(Drop.FABRIC_NOT_FOR_US)
    if eth.ethertype != ETH_P_IP:
        return run.drop(Drop.NOT_OVERLAY)
    ip = parse_ipv4(frame, eth.offset)
    if ip.dst != t.fabric.ip:
        return run.drop(Drop.FABRIC_NOT_FOR_US)
    if run.rec is not None:
        run.rec(Stage.GLOBAL_FIB, f"{ip_to_str(ip.dst)} is local: decapsulate")
    if ip.is_fragment:
        return run.drop(Drop.OUTER_FRAGMENT)
    p = eth.offset + ip.header_len
    end = eth.offset + ip.total_length
    if ip.proto == PROTO_GRE:
        gre = parse_gre(frame, p)
        if gre.protocol != ETH_P_MPLS:
            return run.drop(Drop.GRE_NOT_MPLS)
        if run.rec is not None:
            run.rec(Stage.DECAP, "gre")
        return mpls_in(run, frame[p + gre.header_len : end])
    if ip.proto == PROTO_UDP:
        if end - p < 8:
            raise Malformed("short_udp")
        _, dport = _PORTS.unpack_from(frame, p)
        if dport == UDP_PORT_VXLAN:
            if run.rec is not None:
                run.rec(Stage.DECAP, "udp/vxlan")
            return vxlan_in(run, frame[p + 8 : end])
        if dport in (UDP_PORT_MPLS, UDP_PORT_MPLS_LEGACY):
            if run.rec is not None:
                run.rec(Stage.DECAP, "udp/mpls")
            return mpls_in(run, frame[p + 8 : end])
    return run.drop(Drop.NOT_OVERLAY)


def overlay_in(run: Pass, kind: str, data: bytes) -> None:
    """A tunnel payload without outer headers (see `pipeline.process_overlay`)."""
    run.overlay = kind
    if kind == "vxlan":
        return vxlan_in(run, data)
    if kind == "mpls":
        return mpls_in(run, data)
    raise ValueError(f"unknown overlay kind {kind!r}")


def mpls_in(run: Pass, data: bytes) -> None:
    entry = parse_mpls(data)
    target = run.t.labels.get(entry.label) if entry.bos else None
    vrf = run.t.vrfs.get(target.vrf) if target is not None else None
    if target is None or vrf is None:
        return run.drop(Drop.INVALID_LABEL)
    if run.rec is not None:
        run.rec(Stage.MPLS, f"label {entry.label} -> vrf {vrf.name}")
    payload = data[MPLS_LEN:]
    if target.l2:
        return frame_in(run, vrf, payload, parse_ethernet(payload))
    ip = parse_ipv4(payload)
    route.route(run, vrf, payload[: ip.total_length], ip)
    return None


def vxlan_in(run: Pass, data: bytes) -> None:
    vni = parse_vxlan(data)
    vrf_id = run.t.vnis.get(vni)
    vrf = run.t.vrfs.get(vrf_id) if vrf_id is not None else None
    if vrf is None:
        return run.drop(Drop.INVALID_VNI)
    if run.rec is not None:
        run.rec(Stage.VXLAN, f"vni {vni} -> vrf {vrf.name}")
    inner = data[VXLAN_LEN:]
    return frame_in(run, vrf, inner, parse_ethernet(inner))


def vlan_in(run: Pass, frame: bytes, eth: Ethernet) -> None:
    assert eth.vlan is not None
    vrf_id = run.t.vlans.get(eth.vlan)
    vrf = run.t.vrfs.get(vrf_id) if vrf_id is not None else None
    if vrf is None:
        return run.drop(Drop.INVALID_VLAN)
    if run.rec is not None:
        run.rec(Stage.VLAN, f"vlan {eth.vlan} -> vrf {vrf.name}")
    inner = frame[:12] + frame[16:]
    if eth.dst == run.t.fabric.mac and eth.ethertype == ETH_P_IP:
        ip = parse_ipv4(inner, ETH_LEN)
        return route.route(run, vrf, inner[ETH_LEN : ETH_LEN + ip.total_length], ip)
    return frame_in(run, vrf, inner, parse_ethernet(inner))


def frame_in(run: Pass, vrf: Vrf, frame: bytes, eth: Ethernet) -> None:
    """An Ethernet frame decapsulated into `vrf`: routed or bridged by the VRF's mode."""
    if eth.ethertype == ETH_P_IP and (
        vrf.mode is Mode.L3
        or (vrf.mode is Mode.L2_L3 and vrf.ip_fib.lookup(parse_ipv4(frame, eth.offset).dst))
    ):
        ip = parse_ipv4(frame, eth.offset)
        return route.route(run, vrf, frame[eth.offset : eth.offset + ip.total_length], ip)
    if vrf.mode is Mode.L3:
        return run.drop(Drop.L3_NON_IP)
    return bridge.bridge(run, vrf, frame, eth)


def underlay_arp(run: Pass, frame: bytes, eth: Ethernet) -> None:
    t = run.t
    arp = parse_arp(frame, eth.offset)
    if arp.tpa != t.fabric.ip:
        return run.drop(Drop.ARP_IGNORED)
    t.neighbors[arp.spa] = arp.sha
    if run.rec is not None:
        run.rec(Stage.UNDERLAY_ARP, f"{ip_to_str(arp.spa)} is-at {arp.sha.hex(':')}")
    for rest in t.pending.pop(arp.spa, []):
        run.emit(t.fabric.vif, arp.sha + t.fabric.mac + rest)
    if arp.op == ARP_REQUEST and not t.fabric.kernel_routed:  # else the kernel answers
        run.emit(t.fabric.vif, replies.arp_reply(arp, t.fabric.mac))
    return None
